"""`hybridpqa fuse`: fuse existing TREC runs without re-encoding, optionally tuning on qrels."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.evaluation.metrics import check_metric, score_run
from HybridPQA.evaluation.trec import read_qrels, read_trec, write_trec
from HybridPQA.files import check_output_file, write_atomic
from HybridPQA.retrieval.fusion import Fusion, fuse_runs, tune

METHODS, NORMS = ("linear", "rrf"), ("none", "min-max", "z-score")


def _float(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag}={text}: expected a number") from None
    if not math.isfinite(value):
        raise InputError(f"{flag}={text}: expected a finite number")
    return value


def _rrf_k(text: str) -> int:
    value = _float("--rrf_k", text)
    if value != int(value) or not 1 <= value <= 1e6:
        raise InputError(f"--rrf_k={text}: expected a whole number from 1 to 1000000")
    return int(value)


def fuse_command(args: dict) -> dict:
    paths = [Path(p) for p in args["--runs"].split(",") if p]
    if len(paths) < 2:
        raise InputError(f"--runs={args['--runs']}: give at least two comma-separated TREC runs")
    if args["--method"] not in METHODS or args["--norm"] not in NORMS:
        raise InputError(f"--method must be one of {', '.join(METHODS)} and --norm one of {', '.join(NORMS)}")
    if args["--tune"] and not args["--qrels"]:
        raise InputError("--tune chooses the fusion on relevance judgements; give --qrels=FILE too")
    check_metric(args["--metric"], "--metric")
    output = check_output_file(args["--output"], "--output")
    runs = [read_trec(p) for p in paths]
    for path, run in zip(paths, runs):
        if not run:
            raise InputError(f"{path}: an empty run; nothing to fuse")
    weights = [_float("--weights", w) for w in args["--weights"].split(",")] if args["--weights"] else None
    if weights is not None and len(weights) != len(runs):
        raise InputError(f"--weights={args['--weights']}: {len(weights)} weights for {len(runs)} runs")
    alpha = _float("--alpha", args["--alpha"])
    if not 0 <= alpha <= 1:
        raise InputError(f"--alpha={args['--alpha']}: must lie in [0, 1]")
    if weights is None and len(runs) > 2 and args["--method"] == "linear":
        raise InputError("--alpha covers two runs; give --weights with one weight per run")
    fusion = Fusion(args["--method"], args["--norm"], alpha, _rrf_k(args["--rrf_k"]))
    qrels = read_qrels(Path(args["--qrels"])) if args["--qrels"] else None
    report = {}
    if args["--tune"]:
        if len(runs) != 2:
            raise InputError("--tune chooses the weight of two runs; give exactly two --runs")
        fusion, report["trials"] = tune(runs[0], runs[1], qrels, fusion, args["--metric"])
        weights = None
    fused = fuse_runs(runs, fusion, weights)
    write_trec(fused, output, f"fused.{fusion.method}")
    report["fusion"] = asdict(fusion) | ({"weights": weights} if weights else {})
    if qrels is not None:
        names = [args["--metric"], "mrr@10", "recall@100"]
        report["metrics"] = {str(p): score_run(r, qrels, names) for p, r in zip(paths, runs)}
        report["metrics"][args["--output"]] = score_run(read_trec(Path(args["--output"])), qrels, names)
    summary = {k: v for k, v in report.items() if k != "trials"}
    print(json.dumps(summary, indent=2))
    print(f"fused run: {args['--output']} ({fusion.describe()})")
    return report


def mine_command(args: dict, depth: int) -> dict:
    """`hybridpqa mine`: a training file (the original JSON format) whose negatives are each question's
    top `depth` documents of a run (BM25 or a trained model), the known positives skipped."""
    from HybridPQA.data import find_split, read_split, with_hard_negatives
    from HybridPQA.data.prepare import to_records

    output = check_output_file(args["--output"], "--output")
    if output.exists() and not args["--overwrite"]:
        raise InputError(f"--output={output} exists; pass --overwrite to replace it")
    data = read_split(find_split(args["--path_data"], args["--split"]))
    mined = with_hard_negatives(data, read_trec(Path(args["--run"])), depth, args["--run"])
    records = [r for r in to_records(mined) if r["positive_ctxs"]]
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, json.dumps(records, indent=1, ensure_ascii=False))
    counts = {"questions": len(records), "negatives_per_question": sum(len(r["negative_ctxs"]) for r in records)
              / max(len(records), 1), "left_out_without_positive": len(data.queries) - len(records), "output": str(output)}
    print(json.dumps(counts, indent=2))
    return counts
