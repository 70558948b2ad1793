"""Fuse existing TREC runs (any number, e.g. a dense and a sparse run of one split) without
re-encoding; with --qrels print each input's and the fused run's metrics, with --tune choose the
weight first.

Usage:
  hybridpqa fuse --runs=FILES --output=FILE [--method=NAME] [--norm=NAME] [--alpha=A] [--weights=LIST] [--rrf_k=K] [--qrels=FILE [--tune] [--metric=NAME]]
  hybridpqa fuse -h | --help

Options:
  --runs=FILES     comma-separated TREC runs to fuse
  --output=FILE    fused TREC run to write
  --method=NAME    linear (weighted sum) or rrf (reciprocal rank fusion) [default: linear]
  --norm=NAME      linear: none, min-max or z-score, per query [default: none]
  --alpha=A        linear, two runs: weight of the first run, 1 - A for the second [default: 0.5]
  --weights=LIST   linear: comma-separated weights, one per run (instead of --alpha)
  --rrf_k=K        rrf: the k in 1 / (k + rank) [default: 60]
  --qrels=FILE     BEIR qrels .tsv, TREC qrels, or a pairs split (.json / .csv) with its labels
  --tune           choose --alpha (linear, two runs) or --rrf_k on --qrels with ranx's optimize_fusion
  --metric=NAME    metric to tune and report [default: ndcg@10]

Example:
  hybridpqa fuse --runs=output/zero_shot_scifact/runs/test.dense.trec,output/zero_shot_scifact/runs/test.sparse.trec --norm=z-score --qrels=data/raw/scifact/qrels/test.tsv --tune --output=fused.trec
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from HybridPQA.commands.common import finite_float, parse
from HybridPQA.errors import InputError
from HybridPQA.evaluation.metrics import check_metric, score_run
from HybridPQA.data.trec import read_judgements, read_trec, write_trec
from HybridPQA.files import check_output_file
from HybridPQA.retrieval.fusion import fuse_runs, tune
from HybridPQA.scoring import METHODS, NORMS, Fusion


def fuse(runs: list[str | Path], output: str | Path, fusion: Fusion = Fusion(), weights: list[float] | None = None,
         qrels: str | Path | None = None, tune_on_qrels: bool = False, metric: str = "ndcg@10") -> dict:
    """Fuse `runs` into `output`; returns {"fusion", "trials" (tuned), "metrics" (with qrels)}."""
    paths = [Path(p) for p in runs]
    if len(paths) < 2:
        raise InputError(f"--runs={','.join(map(str, runs))}: give at least two comma-separated TREC runs")
    if fusion.method not in METHODS or fusion.norm not in NORMS:
        raise InputError(f"--method must be one of {', '.join(METHODS)} and --norm one of {', '.join(NORMS)}")
    if tune_on_qrels and not qrels:
        raise InputError("--tune chooses the fusion on relevance judgements; give --qrels=FILE too")
    if not 0 <= fusion.alpha <= 1:
        raise InputError(f"--alpha={fusion.alpha}: must lie in [0, 1]")
    check_metric(metric, "--metric")
    output = check_output_file(output, "--output")
    loaded = [read_trec(p) for p in paths]
    for path, run in zip(paths, loaded):
        if not run:
            raise InputError(f"{path}: an empty run; nothing to fuse")
    if weights is not None and len(weights) != len(loaded):
        raise InputError(f"--weights={','.join(map(str, weights))}: {len(weights)} weights for {len(loaded)} runs")
    if weights is None and len(loaded) > 2 and fusion.method == "linear":
        raise InputError("--alpha covers two runs; give --weights with one weight per run")
    judgements = read_judgements(qrels) if qrels else None
    report = {}
    if tune_on_qrels:
        if len(loaded) != 2:
            raise InputError("--tune chooses the weight of two runs; give exactly two --runs")
        fusion, report["trials"] = tune(loaded[0], loaded[1], judgements, fusion, metric)
        weights = None
    write_trec(fuse_runs(loaded, fusion, weights), output, f"fused.{fusion.method}")
    report["fusion"] = asdict(fusion) | ({"weights": weights} if weights else {})
    if judgements is not None:
        names = [metric, "mrr@10", "recall@100"]
        report["metrics"] = {str(p): score_run(r, judgements, names) for p, r in zip(paths, loaded)}
        report["metrics"][str(output)] = score_run(read_trec(output), judgements, names)
    print(json.dumps({k: v for k, v in report.items() if k != "trials"}, indent=2))
    print(f"fused run: {output} ({fusion.describe()})")
    return report


def _rrf_k(text: str) -> int:
    value = finite_float(text, "--rrf_k")
    if value != int(value) or not 1 <= value <= 1e6:
        raise InputError(f"--rrf_k={text}: expected a whole number from 1 to 1000000")
    return int(value)


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "fuse")
    weights = [finite_float(w, "--weights") for w in args["--weights"].split(",")] if args["--weights"] else None
    fusion = Fusion(args["--method"], args["--norm"], finite_float(args["--alpha"], "--alpha"), _rrf_k(args["--rrf_k"]))
    return fuse([p for p in args["--runs"].split(",") if p], args["--output"], fusion, weights, args["--qrels"],
                args["--tune"], args["--metric"])
