"""Fusing the dense and sparse scores of each query into the hybrid score.

`fuse_scores` works on score matrices holding *every* document of each query (the corpus,
or its candidates), so the fused ranking is exact at any depth. The normalisations follow
ranx's definitions (min-max, and z-score = ranx's "zmuv"), so a weight tuned with
`ranx.optimize_fusion` on runs that hold every document means the same thing here; `fuse_runs`
fuses existing TREC runs with ranx itself, without re-encoding.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from yacs.config import CfgNode

from HybridPQA.files import write_atomic

RANX_NORM = {"none": None, "min-max": "min-max", "z-score": "zmuv"}


@dataclass(frozen=True)
class Fusion:
    method: str = "linear"  # "linear" | "rrf"
    norm: str = "none"  # linear only: "none" | "min-max" | "z-score"
    alpha: float = 0.5  # linear: weight of the dense score
    rrf_k: int = 60

    def describe(self) -> str:
        if self.method == "rrf":
            return f"rrf k={self.rrf_k}"
        return f"linear alpha={self.alpha:g} norm={self.norm}"

    def save(self, path: Path, **extra) -> None:
        write_atomic(path, json.dumps({**asdict(self), **extra}, indent=2))

    @classmethod
    def from_dict(cls, saved: dict) -> Fusion:
        """From `asdict` output, extra keys (a results file's, fusion.json's) ignored."""
        return cls(**{k: saved[k] for k in ("method", "norm", "alpha", "rrf_k")})

    @classmethod
    def load(cls, path: Path) -> Fusion:
        return cls.from_dict(json.loads(Path(path).read_text()))


def fusion_from_cfg(cfg: CfgNode) -> Fusion:
    f = cfg.RETRIEVER.FUSION
    return Fusion(f.METHOD, f.NORM, float(cfg.RETRIEVER.SOLVER.ALPHA), int(f.RRF_K))


def normalize(scores: np.ndarray, norm: str) -> np.ndarray:
    """(Q, N) -> (Q, N), each row on its own: min-max to [0, 1] or z-score (ranx's zmuv)."""
    if norm == "none":
        return scores
    if norm == "min-max":
        low = scores.min(axis=1, keepdims=True)
        return (scores - low) / np.maximum(scores.max(axis=1, keepdims=True) - low, 1e-9)
    if norm == "z-score":
        return (scores - scores.mean(axis=1, keepdims=True)) / np.maximum(scores.std(axis=1, keepdims=True), 1e-9)
    raise ValueError(f"unknown normalisation {norm!r}")


def ranks(scores: np.ndarray) -> np.ndarray:
    """(Q, N) -> (Q, N) 1-based rank of each column in its row, ties by lower column."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return out


def fuse_scores(dense: np.ndarray, sparse: np.ndarray, fusion: Fusion) -> np.ndarray:
    """(Q, N) dense and sparse scores of the same documents -> (Q, N) hybrid scores."""
    if fusion.method == "rrf":
        return 1.0 / (fusion.rrf_k + ranks(dense)) + 1.0 / (fusion.rrf_k + ranks(sparse))
    return fusion.alpha * normalize(dense, fusion.norm) + (1 - fusion.alpha) * normalize(sparse, fusion.norm)


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
