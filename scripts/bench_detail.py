"""What the service's detail costs in process: the page's search (each hit's head scores, its hybrid
split, its matching terms and shaded text: serving.hits.describe_hits) against the plain search of
the same queries (ids, scores, texts), on a saved index tiled TILE times (ids made distinct) so the
cost of scoring the whole corpus shows. Encoding is included in both; p50 over the queries, the
best of two rounds.

    python scripts/bench_detail.py --index=output/scifact-index --queries=data/raw/scifact/queries.jsonl --tile=20
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp
import torch

from HybridPQA.api import SearchIndex
from HybridPQA.data.corpus import read_texts
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.serving.hits import describe_hits


def tiled(index: SearchIndex, times: int) -> SearchIndex:
    corpus = index.corpus
    sparse, dense = corpus.indexes["sparse"].by_doc, torch.as_tensor(np.asarray(corpus.indexes["dense"].vectors))
    reps = {"sparse": sp.vstack([sparse] * times).tocsr(), "dense": torch.cat([dense] * times)}
    docids = [f"{d}#{t}" for t in range(times) for d in corpus.docids]
    texts = {f"{d}#{t}": (index.texts or {}).get(d, "") for t in range(times) for d in corpus.docids}
    return SearchIndex(index.retriever, CorpusIndex.build(reps, docids, index.retriever.engines,
                                                          index.retriever.terms), texts, index.fusion)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="a `hybridpqa index` folder (in memory, sparse and dense)")
    parser.add_argument("--queries", required=True)
    parser.add_argument("--tile", type=int, default=1)
    parser.add_argument("--count", type=int, default=80, help="queries timed")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--scorer", default="hybrid")
    args = parser.parse_args()
    index = tiled(SearchIndex.load(args.index), args.tile)
    queries = list(read_texts(args.queries, "query").values())[:args.count]
    p50 = {}
    for detail in (False, True, False, True):
        describe_hits(index, queries[:2], args.k, args.scorer, detail)  # warm-up
        times = []
        for query in queries:
            started = time.perf_counter()
            describe_hits(index, [query], args.k, args.scorer, detail)
            times.append(time.perf_counter() - started)
        p50[detail] = min(p50.get(detail, float("inf")), 1000 * float(np.median(times)))
    print(json.dumps({"documents": len(index), "plain_p50_ms": round(p50[False], 2),
                      "detailed_p50_ms": round(p50[True], 2), "detail_over_plain": round(p50[True] / p50[False], 2)}))


if __name__ == "__main__":
    main()
