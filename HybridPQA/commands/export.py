"""Export a model or an index for other tools.

Usage:
  hybridpqa export --index=DIR --output=DIR [--quantization=Q]
  hybridpqa export --checkpoint=DIR --output=DIR [--format=NAME] [--overwrite]
  hybridpqa export -h | --help

Options:
  --index=DIR         a saved sparse index (<run>/index/<split>/sparse, or <index>/sparse of `hybridpqa
                      index`), written as a Pyserini / Anserini JsonVectorCollection with integer impacts
  --quantization=Q    integer impacts = round(weight * Q) [default: 100]
  --checkpoint=DIR    a HybridPQA checkpoint (a bi-encoder)
  --format=NAME       sentence-transformers: SparseEncoder folders sparse-query/, sparse-context/ and
                      SentenceTransformer folders dense-query/, dense-context/ [default: sentence-transformers]
  --output=DIR        folder to write
  --overwrite         replace a non-empty --output

A checkpoint folder itself is already in Hugging Face format (query/, context/: AutoModelForMaskedLM);
upload it with `hf upload USER/NAME DIR` (huggingface_hub).

Example:
  hybridpqa export --index=output/zero_shot_scifact/index/test/sparse --output=output/pyserini
  hybridpqa export --checkpoint=output/quickstart/checkpoints/step_000400 --output=output/quickstart-st
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.errors import InputError

FORMATS = ("sentence-transformers",)


def export_model(checkpoint: str | Path, output: str | Path, fmt: str = "sentence-transformers",
                 overwrite: bool = False) -> dict:
    from HybridPQA.api import HybridRetriever
    from HybridPQA.modeling.st_export import export_sentence_transformers

    if fmt not in FORMATS:
        raise InputError(f"--format={fmt}: choose one of {', '.join(FORMATS)}")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        if not overwrite or not output.is_dir():
            raise InputError(f"--output={output}: exists and is not an empty folder; pass --overwrite or choose another")
        shutil.rmtree(output)
    retriever = HybridRetriever.from_pretrained(checkpoint, ["PRECISION", "fp32"])
    written = export_sentence_transformers(retriever.encoder, output)
    return {"output": str(output), "folders": written}


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "export")
    if args["--checkpoint"]:
        counts = export_model(args["--checkpoint"], args["--output"], args["--format"], args["--overwrite"])
    else:
        from HybridPQA.retrieval.export import export_pyserini

        counts = export_pyserini(Path(args["--index"]), Path(args["--output"]),
                                 positive_int(args["--quantization"], "--quantization"))
    print(json.dumps(counts, indent=2))
    return counts
