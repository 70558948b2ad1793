"""Paired significance tests between runs on one set of judgements: the one function behind
`hybridpqa compare`, the sweep leaderboard and the paper tables.

Per-query scores come from ranx (`evaluate(..., return_mean=False)`, queries a run lacks score 0),
after each run's scores are replaced by ranks in the one ranking order our metrics read; the test
is ranx's paired Student t-test (scipy `ttest_rel`, two-sided), so the p-values are ranx
`compare`'s. A correction over all the tests of one call keeps the family-wise error at ALPHA.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ranx import Qrels, Run, evaluate
from scipy.stats import ttest_rel

from HybridPQA.scoring import ranking

ALPHA = 0.05  # family-wise significance level
CORRECTIONS = ("holm", "bonferroni", "none")


@dataclass(frozen=True)
class Test:
    """One metric of one run against another: corrected and raw p, and the per-query record."""
    p: float  # after the correction
    p_raw: float
    significant: bool
    delta: float  # mean of (run - baseline) per query
    wins: int
    ties: int
    losses: int


def judged(labels: dict[str, dict[str, int]]) -> Qrels:
    """Qrels of the positive judgements, for the queries that have one."""
    positive = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in labels.items()}
    return Qrels({q: docs for q, docs in positive.items() if docs})


def ranked(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Scores replaced by descending ranks in the one ranking order (ties broken as everywhere else)."""
    out = {}
    for qid, docs in run.items():
        order = ranking(docs)
        out[qid] = {d: float(len(order) - i) for i, (d, _) in enumerate(order)}
    return out


def per_query(qrels: Qrels, runs: dict[str, dict], metrics: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """{run: {metric: scores in qrels' query order}}; a judged query a run lacks scores 0."""
    out = {}
    for name, run in runs.items():
        scores = evaluate(qrels, Run(ranked(run), name=name), metrics, return_mean=False, make_comparable=True)
        scores = scores if isinstance(scores, dict) else {metrics[0]: scores}
        out[name] = {m: np.asarray(scores[m], dtype=float) for m in metrics}
    return out


def _corrected(raw: list[float], correction: str) -> list[float]:
    if correction == "none":
        return list(raw)
    if correction == "bonferroni":
        return [min(1.0, p * len(raw)) for p in raw]
    order, out, running = sorted(range(len(raw)), key=raw.__getitem__), [0.0] * len(raw), 0.0
    for rank, i in enumerate(order):  # Holm: step-down, monotone
        running = max(running, min(1.0, (len(raw) - rank) * raw[i]))
        out[i] = running
    return out


def paired_tests(scores: dict[str, dict[str, np.ndarray]], pairs: list[tuple[str, str]], metrics: list[str],
                 correction: str = "bonferroni") -> dict[tuple[str, str], dict[str, Test]]:
    """{(run, baseline): {metric: Test}}; each metric's tests are one family, corrected together."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction {correction!r}; use one of {', '.join(CORRECTIONS)}")
    out: dict[tuple[str, str], dict[str, Test]] = {pair: {} for pair in pairs}
    for m in metrics:
        raw = []
        for run, base in pairs:
            a, b = scores[run][m], scores[base][m]
            p = float(ttest_rel(b, a, alternative="two-sided").pvalue) if len(a) > 1 else math.nan
            raw.append(1.0 if math.isnan(p) else p)  # identical per-query scores: no difference to find
        for (run, base), p_raw, p in zip(pairs, raw, _corrected(raw, correction)):
            diff = scores[run][m] - scores[base][m]
            out[(run, base)][m] = Test(p, p_raw, p < ALPHA, float(diff.mean()) if len(diff) else 0.0,
                                       int((diff > 1e-12).sum()), int((abs(diff) <= 1e-12).sum()),
                                       int((diff < -1e-12).sum()))
    return out
