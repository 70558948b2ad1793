"""Approximate engines and the candidate hybrid against the exact index, on a real index.

For a `hybridpqa index` folder, its queries and qrels, in one run:
1. each engine of each head (exact sparse, Seismic; torch, FAISS flat, HNSW, IVF-PQ), with the
   config's parameters: recall of the exact top-10 and top-100, nDCG@10 and its change, search
   latency p50 / p95 (one encoded query at a time) and the speed-up over exact, memory, build time;
2. the candidate hybrid (each head's top k', the union re-scored exactly and fused) for each k':
   the share of the exact hybrid's top-10 and top-100 it recovers, nDCG@10 against the exact
   hybrid, latency, over exact engines and over Seismic + HNSW, with the normalisation's
   statistics from NORM_SAMPLE random documents (the default); and the same with the statistics
   of the union itself, and of the whole corpus (only possible at small scale: the reference).

    python scripts/bench_engines.py --index=output/ix-scifact --queries=data/raw/scifact/queries.jsonl \\
        --qrels=data/raw/scifact/qrels/test.tsv [--k-primes=10,20,50,100,200,500,1000] [KEY VALUE ...]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from HybridPQA.api import HybridRetriever, SearchIndex
from HybridPQA.data.corpus import read_texts
from HybridPQA.evaluation.approximate import exact_recall
from HybridPQA.evaluation.metrics import score_run
from HybridPQA.data.trec import read_qrels
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.engines import EngineSettings
from HybridPQA.retrieval.kernels import top_k

ENGINES = {"sparse": ("exact", "seismic"), "dense": ("torch", "faiss", "hnsw", "ivf-pq")}
EXACT = {"sparse": "sparse exact", "dense": "dense torch"}


def load_index(path: str, model: str | None, overrides: list[str]) -> SearchIndex:
    """A `hybridpqa index` folder, or an evaluation's <run>/index/<split> searched with its checkpoint."""
    if model is None:
        return SearchIndex.load(path, overrides=overrides)
    retriever = HybridRetriever.from_pretrained(model, overrides)
    return SearchIndex(retriever, CorpusIndex.load(path, retriever.engines))


def latency(search, count: int) -> tuple[float, float]:
    """p50, p95 ms of search(i) for queries 0 .. count-1, one at a time, after 3 warm-up calls."""
    times = []
    for i in [0, 1, 2, *range(count)]:
        start = time.perf_counter()
        search(i)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[3:]), 1000 * float(np.percentile(times[3:], 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="a `hybridpqa index` folder, or <run>/index/<split> with --model")
    parser.add_argument("--model", help="the checkpoint that wrote <run>/index/<split> (an evaluation's index)")
    parser.add_argument("--queries", required=True)
    parser.add_argument("--qrels", required=True)
    parser.add_argument("--k-primes", default="10,20,50,100,200,500,1000")
    parser.add_argument("--timed", type=int, default=100, help="queries timed one at a time")
    parser.add_argument("overrides", nargs="*", help="KEY VALUE config overrides (RETRIEVER.INDEX.SEISMIC.*, ...)")
    args = parser.parse_args()

    loaded = load_index(args.index, args.model, args.overrides)
    qrels = read_qrels(args.qrels)
    texts = read_texts(args.queries, "query")
    qids = [q for q in texts if q in qrels]
    q = loaded.retriever.encode_queries([texts[x] for x in qids]).reps
    fusion, base, indexes = loaded.retriever.fusion, loaded.retriever.engines, loaded.corpus.indexes
    one = lambda i: {h: v[i:i + 1] for h, v in q.items()}  # noqa: E731
    timed = min(args.timed, len(qids))
    print(f"{args.index}: {len(loaded):,} documents, {len(qids)} judged queries; fusion {fusion.describe()}")

    exact = CorpusIndex(indexes).search(q, qids, fusion, 100)
    ndcg = {s: score_run(run, qrels, ["ndcg@10"])["ndcg@10"] for s, run in exact.items()}
    rows, speed = [], {}
    for head, names in ENGINES.items():
        for name in names:
            settings = EngineSettings(**{**base.__dict__, head: name, "hybrid": "exact"})
            corpus = CorpusIndex({head: indexes[head]}, settings)
            engine = corpus.engine(head)
            run = corpus.search(q, qids, fusion, 100, (head,))[head]
            p50, p95 = latency(lambda i: corpus.search(one(i), [qids[i]], fusion, 100, (head,)), timed)
            speed[f"{head} {name}"] = p50
            metric = score_run(run, qrels, ["ndcg@10"])["ndcg@10"]
            rows.append(f"| {settings.describe(head)} | {exact_recall(run, exact[head], 10):.4f} | "
                        f"{exact_recall(run, exact[head], 100):.4f} | {metric:.4f} | {metric - ndcg[head]:+.4f} | "
                        f"{p50:.3f} | {p95:.3f} | {speed[EXACT[head]] / p50:.2f}x | {engine.nbytes / 2 ** 20:.1f} | "
                        f"{engine.build_seconds:.2f} |")
    print("\n| engine | recall of exact top-10 | top-100 | nDCG@10 | change | p50 ms | p95 ms | speed-up | MB | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))

    p50_exact, _ = latency(lambda i: CorpusIndex(indexes).search(one(i), [qids[i]], fusion, 10, ("hybrid",)), timed)
    print(f"\nexact hybrid: nDCG@10 {ndcg['hybrid']:.4f}, p50 {p50_exact:.3f} ms (top-10)")
    print("\n| k' | engines | exact top-10 recovered | top-100 | nDCG@10 | change | p50 ms | speed-up | "
          "union-stat norm: top-10 | nDCG@10 | corpus-stat norm: top-10 | nDCG@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    full = CorpusIndex(indexes).all_scores(q)
    for k_prime in [int(k) for k in args.k_primes.split(",")]:
        for engines in (("exact", "torch"), ("seismic", "hnsw")):
            settings = EngineSettings(**{**base.__dict__, "sparse": engines[0], "dense": engines[1],
                                         "hybrid": "candidates", "candidates": k_prime})
            corpus = _with_engines(CorpusIndex(indexes, settings))
            run = corpus.search(q, qids, fusion, 10, ("hybrid",))["hybrid"]  # k' >= k: top-10 from k' candidates
            top100 = "-"
            if k_prime >= 100:
                top100 = f"{exact_recall(corpus.search(q, qids, fusion, 100, ('hybrid',))['hybrid'], exact['hybrid'], 100):.4f}"
            p50, _ = latency(lambda i: corpus.search(one(i), [qids[i]], fusion, 10, ("hybrid",)), timed)
            metric = score_run(run, qrels, ["ndcg@10"])["ndcg@10"]
            union = _with_engines(CorpusIndex(indexes, EngineSettings(**{**settings.__dict__, "norm_sample": 0})))
            union = union.search(q, qids, fusion, 10, ("hybrid",))["hybrid"]
            oracle = _corpus_statistics(corpus, full, q, qids, fusion, k_prime)
            print(f"| {k_prime} | {' + '.join(engines)} | {exact_recall(run, exact['hybrid'], 10):.4f} | {top100} | "
                  f"{metric:.4f} | {metric - ndcg['hybrid']:+.4f} | {p50:.3f} | {p50_exact / p50:.2f}x | "
                  + " | ".join(f"{exact_recall(r, exact['hybrid'], 10):.4f} | {score_run(r, qrels, ['ndcg@10'])['ndcg@10']:.4f}"
                               for r in (union, oracle)) + " |", flush=True)


_ENGINES: dict = {}


def _with_engines(corpus: CorpusIndex) -> CorpusIndex:
    """`corpus` with one engine per (head, name) for the whole run: the k' sweep changes only the search."""
    for head, index in corpus.indexes.items():
        key = (head, corpus.settings.engine(head))
        if key not in _ENGINES:
            _ENGINES[key] = CorpusIndex({head: index}, corpus.settings).engine(head)
        corpus.engines[head] = _ENGINES[key]
    return corpus


def _corpus_statistics(corpus: CorpusIndex, full: dict, q, qids, fusion, k_prime: int) -> dict:
    """The candidate hybrid's top-10, but normalised with each query's statistics over every document."""
    hits = {h: corpus.engine(h).search(q[h], k_prime)[0] for h in ("dense", "sparse")}
    fused = fusion.fuse(full["dense"], full["sparse"])
    run = {}
    for i, qid in enumerate(qids):
        union = sorted((set(hits["dense"][i].tolist()) | set(hits["sparse"][i].tolist())) - {-1})
        order, values = top_k(fused[i, union][None], min(10, len(union)))
        run[qid] = {corpus.docids[union[c]]: v for c, v in zip(order[0], values[0].tolist())}
    return run


if __name__ == "__main__":
    main()
