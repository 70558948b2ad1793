"""Evaluate one model on several BEIR folders and write one table (Markdown and CSV).

Usage:
  hybridpqa benchmark --model=MODEL --datasets=LIST --output=DIR [--config=FILE] [--index=DIR] [--overwrite] [<KEY_VALUE>...]
  hybridpqa benchmark -h | --help

Options:
  --model=MODEL     a HybridPQA checkpoint, or any masked LM (a folder or a hub name), used zero-shot
  --datasets=LIST   comma-separated BEIR folders (corpus.jsonl, queries.jsonl, qrels/test.tsv)
  --output=DIR      DIR/<dataset>/ run directories, DIR/benchmark.md and DIR/benchmark.csv
  --config=FILE     experiment YAML for a masked LM used zero-shot (a checkpoint uses its own)
  --index=DIR       rank from indexes of this model (`hybridpqa index`, or a run's index/<split>/) instead of
                    encoding the corpora again: one index with one dataset, or a folder of them named
                    as the datasets
  --overwrite       evaluate again the datasets whose results are already in DIR

KEY VALUE pairs override the config, as in `evaluate`.

Example:
  hybridpqa benchmark --model=models/splade-tiny --config=configs/zero_shot_scifact.yaml --datasets=data/raw/scifact,../shared/data/cranfield --output=output/benchmark
"""
from __future__ import annotations

from pathlib import Path

from HybridPQA.commands.common import parse
from HybridPQA.errors import InputError


def benchmark(model: str, datasets: list[str], output: str | Path, config: str | None = None,
              overrides: list[str] = (), overwrite: bool = False, index: str | Path | None = None) -> list[dict]:
    from HybridPQA.runtime import setup_logging
    from HybridPQA.suite import markdown, run_benchmark

    if not datasets:
        raise InputError("--datasets: give at least one BEIR folder")
    setup_logging(None)
    rows = run_benchmark(model, [Path(d) for d in datasets], Path(output), config, list(overrides), overwrite,
                         Path(index) if index else None)
    print(markdown(rows, model))
    print(f"table: {Path(output) / 'benchmark.md'}, {Path(output) / 'benchmark.csv'}")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(__doc__, argv, "benchmark")
    return benchmark(args["--model"], [d for d in args["--datasets"].split(",") if d], args["--output"],
                     args["--config"], args["<KEY_VALUE>"], args["--overwrite"], args["--index"])
