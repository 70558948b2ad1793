"""Write a training file (the original JSON format) whose negatives are each question's top
documents of a run (BM25's or a trained model's), the known positives skipped.

Usage:
  hybridpqa mine --run=FILE --data=DIR --split=NAME --output=FILE [--depth=N] [--overwrite]
  hybridpqa mine -h | --help

Options:
  --run=FILE      a TREC run over the split's questions
  --data=DIR      folder with the split (old spelling: --path_data)
  --split=NAME    NAME.json, NAME.csv or qrels/NAME.tsv in --data
  --output=FILE   training file to write
  --depth=N       negatives per question, the run's top N that are not positives [default: 30]
  --overwrite     replace --output if it exists
"""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.data import find_split, read_split, with_hard_negatives
from HybridPQA.data.prepare import to_records
from HybridPQA.errors import InputError
from HybridPQA.data.trec import read_trec
from HybridPQA.files import check_output_file, write_atomic


def mine(run: str | Path, data: str | Path, split: str, output: str | Path, depth: int = 30,
         overwrite: bool = False) -> dict:
    output = check_output_file(output, "--output")
    if output.exists() and not overwrite:
        raise InputError(f"--output={output} exists; pass --overwrite to replace it")
    ranking = read_split(find_split(data, split))
    mined = with_hard_negatives(ranking, read_trec(Path(run)), depth, str(run))
    records = [r for r in to_records(mined) if r["positive_ctxs"]]
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, json.dumps(records, indent=1, ensure_ascii=False))
    counts = {"questions": len(records), "negatives_per_question": sum(len(r["negative_ctxs"]) for r in records)
              / max(len(records), 1), "left_out_without_positive": len(ranking.queries) - len(records),
              "output": str(output)}
    print(json.dumps(counts, indent=2))
    return counts


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "mine")
    return mine(args["--run"], args["--data"], args["--split"], args["--output"], positive_int(args["--depth"], "--depth"),
                args["--overwrite"])
