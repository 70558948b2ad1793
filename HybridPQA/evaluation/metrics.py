"""ranx metrics over a run, overall and per evidence source.

Only questions with at least one positive are scored; the caller reports how many were left out.
"""
from __future__ import annotations

import logging
from pathlib import Path

import ranx
from ranx import Qrels, Run, evaluate

from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError
from HybridPQA.data.trec import Run as RunDict
from HybridPQA.scoring import ranking

RERANK_METRICS = ["mrr@5", "map", "ndcg@5", "ndcg@10", "precision@1", "hit_rate@5", "r-precision"]
RETRIEVE_METRICS = RERANK_METRICS + ["recall@100"]
log = logging.getLogger(__name__)
_compiled: list[bool] = []  # said once per process
RANX_METRICS = ("mrr", "map", "ndcg", "ndcg_burges", "precision", "recall", "hit_rate", "hits", "r-precision", "bpref",
                "f1", "dcg", "dcg_burges")


def check_metric(name: str, where: str) -> str:
    """`name` if ranx computes it (mrr@10, ndcg@5, map, recall@100, ...), else a one-line error."""
    base, _, cut = str(name).partition("@")
    if base not in RANX_METRICS or cut and not (cut.isdigit() and int(cut) > 0) or base == "r-precision" and cut:
        raise InputError(f"{where}: unknown metric {name!r}; use one of {', '.join(RANX_METRICS)}, "
                         "optionally with @k (e.g. ndcg@10)")
    return name


def score_run(run: RunDict, qrels: dict[str, dict[str, int]], metrics: list[str]) -> dict[str, float]:
    """ranx metrics of `run` on the queries of `qrels` that have a positive."""
    judged = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    # the TREC files' order and untied scores: ranx would break ties by a hash of the docid
    run = {q: dict(ranking(run.get(q, {}))) for q in judged}
    if not judged:
        return {m: float("nan") for m in metrics}
    empty = [q for q, docs in run.items() if not docs]
    for q in empty:  # ranx needs a document per query; a dummy one scores zero
        run[q] = {"__none__": 0.0}
    _say_compile()
    values = evaluate(Qrels(judged), Run(run), metrics, make_comparable=True)
    values = values if isinstance(values, dict) else {metrics[0]: values}
    return {m: float(v) for m, v in values.items()}


def _say_compile() -> None:
    """ranx compiles its metrics with numba the first time they run on a machine (about a minute, then
    cached beside ranx): one line says so, rather than a silent minute."""
    if _compiled:
        return
    _compiled.append(True)
    cache = Path(ranx.__file__).parent / "metrics" / "__pycache__"
    if not any(cache.glob("*.nbi")):
        log.info("ranx compiles its metrics once on this machine (about a minute; cached for later runs)")


def per_source(run: RunDict, data: RankingData, metrics: list[str]) -> dict[str, dict[str, float]]:
    """For each source s: questions with a positive from s, ranked among their s candidates only
    (the paper's breakdown). Each entry carries `count`, the number of such questions."""
    out = {}
    for source in sorted(set(data.doc_source.values())):
        qrels = {q: {d: r for d, r in data.qrels[q].items() if r > 0 and data.doc_source.get(d) == source}
                 for q in data.judged_qids()}
        qrels = {q: d for q, d in qrels.items() if d}
        sub = {q: {d: s for d, s in run.get(q, {}).items() if data.doc_source.get(d) == source} for q in qrels}
        if qrels:
            out[source] = {**score_run(sub, qrels, metrics), "count": len(qrels)}
    return out
