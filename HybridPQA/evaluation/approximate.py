"""The `approximate` block of results/<split>.json: what an approximate engine (or the candidate
hybrid) costs and saves against the exact index, on the same queries and the same vectors.

Per scorer it serves: the recall of the exact top-10 and top-100 (the overlap of the two top-k
lists, divided by k), each metric exact and its change, search latency p50 / p95 of both (one
query at a time, the query already encoded), and each engine's memory and build time.
"""
from __future__ import annotations

from HybridPQA.evaluation.efficiency import query_latency
from HybridPQA.evaluation.metrics import score_run
from HybridPQA.data.trec import Run
from HybridPQA.heads import HYBRID, SCORER_HEADS, scorers
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.engines import EXACT_ENGINES
from HybridPQA.scoring import Fusion, ranking

RECALL_AT = (10, 100)


def exact_recall(run: Run, exact: Run, k: int) -> float:
    """Mean over the exact run's queries of |top-k(run) & top-k(exact)| / k (both in the one ranking order)."""
    shares = []
    for qid, docs in exact.items():
        want = [d for d, _ in ranking(docs)[:k]]
        got = {d for d, _ in ranking(run.get(qid, {}))[:k]}
        shares.append(len(got.intersection(want)) / max(len(want), 1))
    return sum(shares) / max(len(shares), 1)


def approximated_scorers(corpus: CorpusIndex) -> list[str]:
    s = corpus.settings
    approx = {h for h in corpus.heads if s.engine(h) not in EXACT_ENGINES}
    hybrid = HYBRID in scorers(corpus.heads) and (approx or s.hybrid == "candidates")
    return [HYBRID] * bool(hybrid) + sorted(approx)


def approximation(corpus: CorpusIndex, ranked, exact_runs: dict[str, Run], fusion: Fusion, depth: int, qrels: dict,
                  metrics: list[str], device, count: int = 50) -> dict:
    """{scorer: report} for each scorer `corpus` approximates: `ranked` (rankers.Ranked) is the
    evaluation's ranking through the engines, `exact_runs` the same queries ranked by the exact index."""
    exact = CorpusIndex(corpus.indexes)
    runs, qids, q_reps = ranked.runs, list(ranked.qids), ranked.query_reps
    row = {q: i for i, q in enumerate(qids)}
    one = lambda q: {h: v[row[q]:row[q] + 1] for h, v in q_reps.items()}  # noqa: E731  (one encoded query)
    out = {}
    for scorer in approximated_scorers(corpus):
        exact_metrics = score_run(exact_runs[scorer], qrels, metrics)
        approx_metrics = score_run(runs[scorer], qrels, metrics)
        timed = query_latency({name: (lambda q, index=index: index.search(one(q), [q], fusion, depth, (scorer,)))
                               for name, index in (("exact", exact), ("approximate", corpus))}, qids, device, count)
        heads = SCORER_HEADS[scorer]
        out[scorer] = {
            "engines": {h: corpus.settings.describe(h) for h in heads},
            HYBRID: corpus.settings.hybrid if scorer == HYBRID else None,
            "candidates": corpus.settings.candidates,
            **{f"recall_of_exact@{k}": exact_recall(runs[scorer], exact_runs[scorer], k) for k in RECALL_AT},
            "metrics_exact": exact_metrics,
            "metrics_change": {m: approx_metrics[m] - exact_metrics[m] for m in metrics},
            **{f"search_ms_{p}_{name}": t[f"latency_ms_{p}"] for name, t in timed.items() for p in ("p50", "p95")},
            "index_bytes": {h: corpus.engine(h).nbytes for h in heads},
            "index_bytes_exact": {h: corpus.indexes[h].nbytes for h in heads},
            "build_seconds": {h: corpus.engine(h).build_seconds for h in heads},
        }
    return out
