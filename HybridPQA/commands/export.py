"""Write a saved sparse index as a Pyserini / Anserini JsonVectorCollection with integer impacts.

Usage:
  hybridpqa export --index=DIR --output=DIR [--quantization=Q]
  hybridpqa export -h | --help

Options:
  --index=DIR         a saved sparse index, <run>/index/<split>/sparse
  --output=DIR        folder for the Pyserini files
  --quantization=Q    integer impacts = round(weight * Q) [default: 100]

Example:
  hybridpqa export --index=output/zero_shot_scifact/index/test/sparse --output=output/pyserini
"""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.retrieval.export import export_pyserini


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "export")
    counts = export_pyserini(Path(args["--index"]), Path(args["--output"]),
                             positive_int(args["--quantization"], "--quantization"))
    print(json.dumps(counts, indent=2))
    return counts
