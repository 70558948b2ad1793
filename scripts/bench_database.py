"""Vector databases against the exact in-process hybrid, on real vectors and at scale.

For each database (Qdrant embedded: Qdrant Edge, or `qdrant-local`, qdrant-client's pure-Python local
mode; Milvus Lite) and hybrid mode (the model's fusion over the
union of each head's top k', re-scored exactly; the engine's native fusion), in one run and on the
same queries: recall of the exact hybrid's top-10 and top-100, nDCG@10 against the exact hybrid's
(with --qrels), latency p50 / p95 (one query at a time, encoding excluded), insert time and the
process's resident memory added by the database. The in-process candidate hybrid (exact engines,
k' the same) is the row to compare with. --sizes adds bench_scale.py's synthetic corpora (real
documents' lengths and weights, terms redrawn by document frequency).

    python scripts/bench_database.py --index=output/scifact-index --queries=data/raw/scifact/queries.jsonl \\
        --qrels=data/raw/scifact/qrels/test.tsv --sizes=20000,50000 --output=docs/database
"""
from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from bench_engines import latency, load_index
from bench_scale import synthesise

from HybridPQA.data.corpus import read_texts
from HybridPQA.evaluation.metrics import score_run
from HybridPQA.data.trec import read_qrels
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.databases import EMBEDDED, build_database
from HybridPQA.retrieval.databases.base import corpus_batches, push
from HybridPQA.retrieval.engines import EngineSettings
from HybridPQA.retrieval.index import DenseIndex, SparseIndex


LOCAL_MODE = "qdrant-local"  # --engines name of Qdrant's local mode (the embedded Qdrant is Qdrant Edge)


def rss_mb() -> float:
    """The resident memory now (not the peak): what a database adds stays in it."""
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * 4096 / 2 ** 20


def overlap(got: dict, want: dict, k: int) -> float:
    return float(np.mean([len(set(list(got[q])[:k]) & set(list(want[q])[:k])) / max(1, min(k, len(want[q])))
                          for q in want]))


def measure(corpus: CorpusIndex, q: dict, qids: list[str], fusion, qrels: dict | None, timed: int, engines: list[str],
            candidates: int) -> list[dict]:
    size = len(corpus.docids)
    exact = corpus.search(q, qids, fusion, 100, ("hybrid",))["hybrid"]
    ndcg = (lambda run: score_run(run, qrels, ["ndcg@10"])["ndcg@10"]) if qrels else (lambda run: float("nan"))  # noqa: E731
    one = lambda i: ({h: v[i:i + 1] for h, v in q.items()}, [qids[i]])  # noqa: E731
    rows = []

    def row(name: str, search, built: dict) -> None:
        run = search(q, qids)
        p50, p95 = latency(lambda i: search(*one(i)), min(timed, len(qids)))
        rows.append({"documents": size, "engine": name, "recall@10": overlap(run, exact, 10),
                     "recall@100": overlap(run, exact, 100), "ndcg@10": ndcg({x: dict(list(run[x].items())[:10])
                                                                            for x in run}),
                     "p50_ms": p50, "p95_ms": p95, **built})
        print(f"  {name:<34} recall@10 {rows[-1]['recall@10']:.3f}  recall@100 {rows[-1]['recall@100']:.3f}  "
              f"nDCG@10 {rows[-1]['ndcg@10']:.4f}  p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  "
              f"insert {built.get('insert_s', 0):7.1f} s  +{built.get('memory_mb', 0):7.1f} MB")

    row("memory exact", lambda qq, ids: corpus.search(qq, ids, fusion, 100, ("hybrid",))["hybrid"], {})
    cand = CorpusIndex(corpus.indexes, EngineSettings(hybrid="candidates", candidates=candidates))
    row(f"memory candidates k'={candidates}", lambda qq, ids: cand.search(qq, ids, fusion, 100, ("hybrid",))["hybrid"], {})
    for engine in engines:
        with tempfile.TemporaryDirectory(prefix=f"bench-{engine}-") as folder:
            if engine == LOCAL_MODE:  # qdrant-client's pure-Python local mode, as index folders made before Qdrant Edge
                from qdrant_client import QdrantClient

                QdrantClient(path=str(Path(folder) / EMBEDDED["qdrant"])).close()
            before = rss_mb()
            database = build_database("qdrant" if engine == LOCAL_MODE else engine, "", "bench", Path(folder),
                                      corpus.docids, candidates, index_id=secrets.token_hex(8))  # a fresh collection
            started = time.perf_counter()
            push(database, corpus_batches(corpus, 2000), 500)
            built = {"insert_s": time.perf_counter() - started, "memory_mb": rss_mb() - before,
                     "disk_mb": sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2 ** 20}
            for mode in ("candidates", "native"):
                database.hybrid = mode
                row(f"{engine} {mode}", lambda qq, ids: database.search(qq, ids, fusion, 100, ("hybrid",))["hybrid"],
                    built)
            database.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="a `hybridpqa index` folder (in memory) of a hybrid model")
    parser.add_argument("--model", help="the checkpoint, when --index is an evaluation's <run>/index/<split>")
    parser.add_argument("--queries", required=True)
    parser.add_argument("--qrels", help="judgements of the real corpus (nDCG@10)")
    parser.add_argument("--engines", default="qdrant,milvus", help="qdrant (embedded: Qdrant Edge), qdrant-local, milvus")
    parser.add_argument("--sizes", default="", help="synthetic corpus sizes after the real one, e.g. 20000,50000")
    parser.add_argument("--timed", type=int, default=50, help="queries timed one at a time")
    parser.add_argument("--candidates", type=int, default=200, help="k' per head")
    parser.add_argument("--output", default="docs/database")
    args = parser.parse_args()
    loaded = load_index(args.index, args.model, [])
    texts = read_texts(args.queries, "query")
    qrels = read_qrels(args.qrels) if args.qrels else None
    if qrels:
        texts = {q: t for q, t in texts.items() if q in qrels}
    qids = list(texts)
    q = loaded.retriever.encode_queries(list(texts.values())).reps
    fusion, engines = loaded.retriever.fusion, args.engines.split(",")
    print(f"{len(loaded)} documents, {len(qids)} queries; fusion {fusion.describe()}; threads {torch.get_num_threads()}")
    print(f"\n{len(loaded):,} documents (real)")
    rows = measure(loaded.corpus, q, qids, fusion, qrels, args.timed, engines, args.candidates)
    real_sparse, real_dense = loaded.corpus.indexes["sparse"].by_doc, np.asarray(loaded.corpus.indexes["dense"].vectors)
    for size in [int(s) for s in args.sizes.split(",") if s]:
        extra = size - real_sparse.shape[0]
        more_sparse, more_dense = synthesise(real_sparse, real_dense, extra)
        sparse, dense = sp.vstack([real_sparse, more_sparse]).tocsr(), np.concatenate([real_dense, more_dense])
        docids = [str(i) for i in range(size)]
        corpus = CorpusIndex({"sparse": SparseIndex.build(sparse, docids), "dense": DenseIndex(dense, docids)})
        print(f"\n{size:,} documents ({extra:,} synthesised)")
        few = {h: v[:args.timed] for h, v in q.items()}  # queries without judgements here: the timed ones
        rows += measure(corpus, few, qids[:args.timed], fusion, None, args.timed, engines, args.candidates)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "database.json").write_text(json.dumps(rows, indent=2))
    lines = ["| documents | engine, hybrid | recall@10 | recall@100 | nDCG@10 | p50 ms | p95 ms | insert s | memory MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['documents']:,} | {r['engine']} | {r['recall@10']:.3f} | {r['recall@100']:.3f} | "
              f"{r['ndcg@10']:.4f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r.get('insert_s', 0):.1f} | "
              f"{r.get('memory_mb', 0):.0f} |" for r in rows]
    (out / "database.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
