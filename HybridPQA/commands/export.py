"""Export a model or an index for other tools.

Usage:
  hybridpqa export --index=DIR --output=DIR [--quantization=Q] [--overwrite]
  hybridpqa export --checkpoint=DIR --output=DIR [--format=NAME] [--top_k=K] [--int8] [--overwrite]
  hybridpqa export -h | --help

Options:
  --index=DIR         a saved sparse index (<run>/index/<split>/sparse, or <index>/sparse of `hybridpqa
                      index`), written as a Pyserini / Anserini JsonVectorCollection with integer impacts
  --quantization=Q    integer impacts = round(weight * Q) [default: 100]
  --checkpoint=DIR    a HybridPQA checkpoint (a bi-encoder)
  --format=NAME       sentence-transformers: a SparseEncoder folder sparse/ and a SentenceTransformer folder
                      dense/, each a Router (encode_query / encode_document); onnx: one ONNX graph per
                      encoder side giving the dense and the sparse vector in one call, with the tokenizer
                      and hybridpqa_onnx.json (what each output is) [default: sentence-transformers]
  --top_k=K           onnx: also output each text's K largest sparse weights and their term ids
  --int8              onnx: int8 weights, activations quantised at run time (onnxruntime.quantization)
  --output=DIR        folder to write
  --overwrite         replace an earlier export in --output (a folder that is not an export is never
                      replaced); the new export is built beside it and swapped in when complete

A checkpoint folder itself is already in Hugging Face format (query/, context/: AutoModelForMaskedLM);
upload it with `hf upload USER/NAME DIR` (huggingface_hub).

Example:
  hybridpqa export --index=output/zero_shot_scifact/index/test/sparse --output=output/pyserini
  hybridpqa export --checkpoint=output/quickstart/checkpoints/step_000400 --output=output/quickstart-st
  hybridpqa export --checkpoint=output/quickstart/checkpoints/step_000400 --output=output/quickstart-onnx --format=onnx --top_k=128
"""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.errors import InputError

FORMATS = ("sentence-transformers", "onnx")


def export_model(checkpoint: str | Path, output: str | Path, fmt: str = "sentence-transformers",
                 overwrite: bool = False, top_k: int | None = None, int8: bool = False) -> dict:
    from HybridPQA.api import HybridRetriever
    from HybridPQA.modeling.onnx_export import MANIFEST
    from HybridPQA.modeling.pretrained import CONFIG_FILE
    from HybridPQA.modeling.st_export import export_sentence_transformers
    from HybridPQA.outputs import claim, publish, staging
    from HybridPQA.runtime import quiet_libraries, setup_logging

    if fmt not in FORMATS:
        raise InputError(f"--format={fmt}: choose one of {', '.join(FORMATS)}")
    if top_k is not None and fmt != "onnx":
        raise InputError(f"--top_k is for --format=onnx; {fmt} keeps the model's own TOP_K")
    if int8 and fmt != "onnx":
        raise InputError(f"--int8 is for --format=onnx; {fmt} keeps the model's weights as they are")
    setup_logging(None)
    output = claim(output, "export", overwrite, [checkpoint])
    retriever = HybridRetriever.from_pretrained(checkpoint, ["PRECISION", "fp32"])
    built = staging(output, "export")
    if fmt == "onnx":  # with what HybridRetriever.from_pretrained needs beside the graphs
        manifest = retriever.export_onnx(built, top_k, int8)
        written = sorted({g["file"] for g in manifest["graphs"].values()}) + [MANIFEST, CONFIG_FILE]
    else:
        with quiet_libraries():  # sentence-transformers' own loads report on the heads it re-reads
            written = export_sentence_transformers(retriever.encoder, built)
    publish(built, output, "export")
    return {"output": str(output), "format": fmt, "files" if fmt == "onnx" else "folders": written}


def export_index(index: str | Path, output: str | Path, quantization: int, overwrite: bool = False) -> dict:
    from HybridPQA.outputs import claim, publish, staging
    from HybridPQA.retrieval.export import export_pyserini
    from HybridPQA.retrieval.index import SparseIndex

    SparseIndex.load(Path(index))  # the input is checked first
    output = claim(output, "pyserini", overwrite, [index])
    built = staging(output, "pyserini")
    counts = export_pyserini(Path(index), built, quantization)
    publish(built, output, "pyserini")
    return counts


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "export")
    if args["--checkpoint"]:
        top_k = positive_int(args["--top_k"], "--top_k") if args["--top_k"] else None
        counts = export_model(args["--checkpoint"], args["--output"], args["--format"], args["--overwrite"], top_k,
                              args["--int8"])
    else:
        counts = export_index(args["--index"], args["--output"], positive_int(args["--quantization"], "--quantization"),
                              args["--overwrite"])
    print(json.dumps(counts, indent=2))
    return counts
