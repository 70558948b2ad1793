"""Export a model or an index for other tools.

Usage:
  hybridpqa export --index=DIR --output=DIR [--quantization=Q] [--overwrite]
  hybridpqa export --checkpoint=DIR --output=DIR [--format=NAME] [--overwrite]
  hybridpqa export -h | --help

Options:
  --index=DIR         a saved sparse index (<run>/index/<split>/sparse, or <index>/sparse of `hybridpqa
                      index`), written as a Pyserini / Anserini JsonVectorCollection with integer impacts
  --quantization=Q    integer impacts = round(weight * Q) [default: 100]
  --checkpoint=DIR    a HybridPQA checkpoint (a bi-encoder)
  --format=NAME       sentence-transformers: a SparseEncoder folder sparse/ and a SentenceTransformer folder
                      dense/, each a Router (encode_query / encode_document) [default: sentence-transformers]
  --output=DIR        folder to write
  --overwrite         replace an earlier export in --output (a folder that is not an export is never
                      replaced); the new export is built beside it and swapped in when complete

A checkpoint folder itself is already in Hugging Face format (query/, context/: AutoModelForMaskedLM);
upload it with `hf upload USER/NAME DIR` (huggingface_hub).

Example:
  hybridpqa export --index=output/zero_shot_scifact/index/test/sparse --output=output/pyserini
  hybridpqa export --checkpoint=output/quickstart/checkpoints/step_000400 --output=output/quickstart-st
"""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.errors import InputError
from HybridPQA.heads import HEADS

FORMATS = ("sentence-transformers",)


ST_FOLDERS = {*HEADS, "sparse-query", "sparse-context", "dense-query", "dense-context"}  # one per head; the old layout


def _earlier(names: set[str]) -> callable:
    """An export from before the marker: a folder holding only these names."""
    return lambda folder: {p.name for p in folder.iterdir()} <= names


def export_model(checkpoint: str | Path, output: str | Path, fmt: str = "sentence-transformers",
                 overwrite: bool = False) -> dict:
    from HybridPQA.api import HybridRetriever
    from HybridPQA.modeling.st_export import export_sentence_transformers
    from HybridPQA.outputs import claim, publish, staging
    from HybridPQA.runtime import quiet_libraries, setup_logging

    setup_logging(None)
    if fmt not in FORMATS:
        raise InputError(f"--format={fmt}: choose one of {', '.join(FORMATS)}")
    output = claim(output, "export", overwrite, [checkpoint], legacy=_earlier(ST_FOLDERS))
    retriever = HybridRetriever.from_pretrained(checkpoint, ["PRECISION", "fp32"])
    built = staging(output, "export")
    with quiet_libraries():  # sentence-transformers' own loads report on the heads it re-reads
        written = export_sentence_transformers(retriever.encoder, built)
    publish(built, output, "export")
    return {"output": str(output), "folders": written}


def export_index(index: str | Path, output: str | Path, quantization: int, overwrite: bool = False) -> dict:
    from HybridPQA.outputs import claim, publish, staging
    from HybridPQA.retrieval.export import export_pyserini
    from HybridPQA.retrieval.index import SparseIndex

    SparseIndex.load(Path(index))  # the input is checked first
    output = claim(output, "pyserini", overwrite, [index], legacy=_earlier({"corpus", "queries.tsv"}))
    built = staging(output, "pyserini")
    counts = export_pyserini(Path(index), built, quantization)
    publish(built, output, "pyserini")
    return counts


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "export")
    if args["--checkpoint"]:
        counts = export_model(args["--checkpoint"], args["--output"], args["--format"], args["--overwrite"])
    else:
        counts = export_index(args["--index"], args["--output"], positive_int(args["--quantization"], "--quantization"),
                              args["--overwrite"])
    print(json.dumps(counts, indent=2))
    return counts
