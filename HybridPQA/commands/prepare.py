"""Copy the datasets and the models (splade-tiny, all-MiniLM-L6-v2) from ../shared (else download them
from their public sources) and build the product-QA and ePQA experiment splits.

Usage:
  hybridpqa prepare [--raw=DIR] [--models=DIR] [--output=DIR] [--epqa=DIR]
  hybridpqa prepare -h | --help

Options:
  --raw=DIR      where raw datasets are copied or downloaded (old spelling: --path_raw) [default: data/raw]
  --models=DIR   where the models are copied or unpacked (old: --path_models) [default: models]
  --output=DIR   where the product-QA experiment is written (old: --path_out) [default: data/product-qa]
  --epqa=DIR     where the ePQA experiment (graded labels, split by product) is written [default: data/epqa]
"""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.commands.common import parse
from HybridPQA.data.assets import fetch_all
from HybridPQA.data.prepare import prepare_epqa, prepare_product_qa
from HybridPQA.runtime import setup_logging


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "prepare")
    setup_logging()
    fetch_all(Path(args["--raw"]), Path(args["--models"]))
    stats = prepare_product_qa(Path(args["--raw"]) / "hetpqa", Path(args["--output"]))
    stats["epqa"] = prepare_epqa(Path(args["--raw"]) / "epqa", Path(args["--epqa"]))
    print(json.dumps({k: v for k, v in stats.items() if k != "input_issues"}, indent=2))
    return stats
