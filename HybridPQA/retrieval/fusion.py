"""Fusing existing TREC runs with ranx, and tuning the fusion's weight on relevance judgements.

The hybrid score itself is `HybridPQA.scoring.Fusion`; here it is applied to runs (any number,
without re-encoding) and its ALPHA or RRF_K chosen by `ranx.optimize_fusion`.
"""
from __future__ import annotations

import re
from dataclasses import replace

from HybridPQA.scoring import Fusion

RANX_NORM = {"none": None, "min-max": "min-max", "z-score": "zmuv"}


def _ranx_runs(runs: list[dict[str, dict[str, float]]]):
    from ranx import Run

    return [Run({q: dict(docs) for q, docs in run.items()}) for run in runs]


def tune(dense_run: dict, sparse_run: dict, qrels: dict, fusion: Fusion, metric: str,
         step: float = 0.05) -> tuple[Fusion, dict[str, float]]:
    """Best ALPHA (linear, grid `step`) or RRF_K (rrf, 10..100) on `qrels`, each trial scored by
    ranx.optimize_fusion: (fusion, {trial: metric}). Ties go to the trial closest to the
    configured value (ranx itself would take the last one)."""
    from ranx import Qrels, optimize_fusion

    judged = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs and q in dense_run and q in sparse_run}
    runs = _ranx_runs([{q: dense_run[q] for q in judged}, {q: sparse_run[q] for q in judged}])
    options = {"norm": None, "method": "rrf", "min_k": 10, "max_k": 100, "step": 10} if fusion.method == "rrf" else \
        {"norm": RANX_NORM[fusion.norm], "method": "wsum", "step": step}
    _, report = optimize_fusion(Qrels(judged), runs, metric=metric, return_optimization_report=True,
                                show_progress=False, **options)
    trials = {_trial_value(str(c)): float(v) for c, v in zip(report.configs, report.results)}
    best = max(trials.values())
    current = fusion.rrf_k if fusion.method == "rrf" else fusion.alpha
    value = min((v for v, score in trials.items() if score >= best - 1e-12), key=lambda v: abs(v - current))
    tuned = replace(fusion, rrf_k=int(value)) if fusion.method == "rrf" else replace(fusion, alpha=value)
    name = "rrf_k" if fusion.method == "rrf" else "alpha"
    return tuned, {f"{name}={v:g}": score for v, score in trials.items()}


def _trial_value(config: str) -> float:
    """ranx reports a trial as str(params): "(np.float64(0.3), np.float64(0.7))" or "60"."""
    return float(re.findall(r"\d+(?:\.\d+)?", config.replace("np.float64", ""))[0])


def fuse_runs(runs: list[dict], fusion: Fusion, weights: list[float] | None = None) -> dict[str, dict[str, float]]:
    """Fuse TREC runs (any number) with ranx: weighted sum after `fusion.norm`, or RRF. Every query
    of any run is kept: one missing from some runs is fused from the runs that have it."""
    from ranx import fuse

    if fusion.method != "rrf" and weights is None:
        if len(runs) != 2:
            raise ValueError("give one weight per run for more than two runs")
        weights = [fusion.alpha, 1 - fusion.alpha]
    groups: dict[tuple[int, ...], list[str]] = {}
    for qid in dict.fromkeys(q for run in runs for q in run):
        groups.setdefault(tuple(i for i, run in enumerate(runs) if run.get(qid)), []).append(qid)
    out: dict[str, dict[str, float]] = {}
    for members, qids in groups.items():
        if len(members) == 1:  # one run alone: its ranking, on the fused scale of a single run
            group = [{q: runs[members[0]][q] for q in qids}] * 2
            group_weights = [1.0, 0.0]
        else:
            group = [{q: runs[i][q] for q in qids} for i in members]
            group_weights = None if weights is None else [weights[i] for i in members]
        ranx_runs = _ranx_runs(group)
        if fusion.method == "rrf":
            fused = fuse(ranx_runs, norm=None, method="rrf", params={"k": fusion.rrf_k})
        else:
            fused = fuse(ranx_runs, norm=RANX_NORM[fusion.norm], method="wsum", params={"weights": group_weights})
        out.update({q: dict(docs) for q, docs in fused.to_dict().items()})
    return out
