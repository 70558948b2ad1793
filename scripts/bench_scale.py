"""How retrieval's costs grow with the corpus: latency, memory, index size and build time of the exact
sparse index, Seismic, FAISS flat and FAISS HNSW, and of the hybrid (exact over every document, and
the candidate hybrid over Seismic + HNSW), from 10 k to 1 M+ documents, with each approximate
index's recall of the exact top-10 and its speed-up over exact, all measured in one run.

The corpus: the real splade-tiny vectors of the indexes given (`hybridpqa index` folders: SciFact,
Cranfield, TREC-DL19 passages), then documents synthesised from them (`synthesise`): each copies a
random real document's length and weights, and keeps each of its terms with probability KEEP, the
rest replaced by terms drawn in proportion to their document frequency in the real corpus, so that
document lengths and posting-list lengths stay those of real documents; its dense vector is the real
one plus Gaussian noise of NOISE times each dimension's spread, at the real vector's norm. Queries
are the real queries of the folders, encoded by the index's model.

    python scripts/bench_scale.py --index=output/ix-scifact,output/ix-cranfield,output/ix-dl19 \\
        --queries=data/raw/scifact/queries.jsonl --sizes=10000,100000,1000000 --output=docs/scale
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from bench_engines import latency, load_index

from HybridPQA.data.corpus import read_texts
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.engines import EngineSettings, build_engine_settings
from HybridPQA.retrieval.index import DenseIndex, SparseIndex
from HybridPQA.config import load_config

KEEP, NOISE, CHUNK = 0.5, 0.5, 50_000


def synthesise(real_sparse: sp.csr_matrix, real_dense: np.ndarray, n: int, seed: int = 0):
    """n documents from real ones (the module's docstring): (n, V) CSR and (n, D) float32."""
    rng = np.random.default_rng(seed)
    df = np.diff(real_sparse.tocsc().indptr).astype(np.float64)
    terms_by_df = np.repeat(np.arange(len(df)), df.astype(np.int64))  # a term drawn with probability df / nnz
    spread = real_dense.std(0)
    blocks, dense = [], []
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        source = rng.integers(0, real_sparse.shape[0], size)
        rows = real_sparse[source]
        lengths = np.diff(rows.indptr)
        keep = rng.random(rows.nnz) < KEEP
        terms = np.where(keep, rows.indices, terms_by_df[rng.integers(0, len(terms_by_df), rows.nnz)])
        block = sp.csr_matrix((rows.data, terms, np.r_[0, np.cumsum(lengths)]), shape=(size, real_sparse.shape[1]))
        block.sum_duplicates()
        blocks.append(block)
        vectors = real_dense[source] + rng.normal(size=(size, real_dense.shape[1])) * spread * NOISE
        norms = np.linalg.norm(real_dense[source], axis=1, keepdims=True)
        dense.append((vectors / np.linalg.norm(vectors, axis=1, keepdims=True) * norms).astype(np.float32))
    return sp.vstack(blocks).tocsr(), np.concatenate(dense)


def recall(got: np.ndarray, want: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(got, want)]))


def _nbytes(m: sp.csr_matrix) -> int:
    return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: int, sparse: sp.csr_matrix, dense: np.ndarray, q: dict, settings: EngineSettings,
            fusion, count: int) -> list[dict]:
    """One corpus size: a row per index (exact sparse, seismic, flat, faiss flat, hnsw, the two hybrids)."""
    rows, docids = [], [str(i) for i in range(size)]
    started = time.perf_counter()
    exact_sparse = SparseIndex.build(sparse, docids)
    sparse_build = time.perf_counter() - started
    exact_dense = DenseIndex(dense, docids)
    one = lambda head, i: q[head][i:i + 1]  # noqa: E731
    want = {"sparse": exact_sparse.search(q["sparse"], 10)[0], "dense": exact_dense.search(q["dense"], 10)[0]}
    engines = {}
    for head, name, index in (("sparse", "exact", exact_sparse), ("sparse", "seismic", exact_sparse),
                              ("dense", "torch", exact_dense), ("dense", "faiss", exact_dense),
                              ("dense", "hnsw", exact_dense)):
        engine = engines[name] = CorpusIndex({head: index}, replace(settings, **{head: name})).engine(head)
        build = sparse_build if name == "exact" else engine.build_seconds
        got = engine.search(q[head], 10)[0]
        p50, p95 = latency(lambda i: engine.search(one(head, i), 10), count)
        rows.append({"documents": size, "index": f"{head} {name}", "build_s": build, "index_mb": engine.nbytes / 2 ** 20,
                     "p50_ms": p50, "p95_ms": p95, "recall@10": recall(got, want[head]), "peak_rss_mb": rss_mb()})
    both = {"sparse": exact_sparse, "dense": exact_dense}
    qids = [str(i) for i in range(q["dense"].shape[0])]
    exact_hybrid = CorpusIndex(both).search(q, qids, fusion, 10, ("hybrid",))["hybrid"]
    candidate = CorpusIndex(both, replace(settings, sparse="seismic", dense="hnsw", hybrid="candidates"))
    candidate.engines = {"sparse": engines["seismic"], "dense": engines["hnsw"]}
    for name, hybrid in (("hybrid exact", CorpusIndex(both)),
                         (f"hybrid candidates k'={settings.candidates} (seismic + hnsw)", candidate)):
        run = hybrid.search(q, qids, fusion, 10, ("hybrid",))["hybrid"]
        p50, p95 = latency(lambda i: hybrid.search({h: one(h, i) for h in q}, [qids[i]], fusion, 10, ("hybrid",)), count)
        share = np.mean([len(set(run[x]) & set(exact_hybrid[x])) / 10 for x in qids])
        built = hybrid.engines.values()  # the candidate hybrid also keeps the forward index and the vectors
        index_bytes = sum(e.nbytes for e in built) + _nbytes(exact_sparse.by_doc) if built else exact_sparse.nbytes
        rows.append({"documents": size, "index": name, "build_s": sum(e.build_seconds for e in built) if built else
                     sparse_build, "index_mb": (index_bytes + exact_dense.nbytes) / 2 ** 20,
                     "p50_ms": p50, "p95_ms": p95, "recall@10": float(share), "peak_rss_mb": rss_mb()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="comma-separated `hybridpqa index` folders (real vectors)")
    parser.add_argument("--model", help="the checkpoint of the first folder when it is an evaluation's <run>/index/<split>")
    parser.add_argument("--queries", required=True, help="queries file searched (BEIR queries.jsonl, ...)")
    parser.add_argument("--sizes", default="10000,30000,100000,300000,1000000")
    parser.add_argument("--queries-count", type=int, default=100, help="queries timed one at a time per index")
    parser.add_argument("--output", default="docs/scale", help="folder for scale.json, scale.md and scale.png")
    parser.add_argument("overrides", nargs="*", help="KEY VALUE config overrides (RETRIEVER.INDEX.SEISMIC.*, HNSW.*, ...)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    folders = args.index.split(",")
    loaded = load_index(folders[0], args.model, [])
    real = [CorpusIndex.load(f) for f in folders]
    real_sparse = sp.vstack([r.indexes["sparse"].by_doc for r in real]).tocsr()
    real_dense = np.concatenate([np.asarray(r.indexes["dense"].vectors) for r in real])
    texts = list(read_texts(args.queries, "query").values())[:args.queries_count]
    q = loaded.retriever.encode_queries(texts).reps
    settings = build_engine_settings(load_config(None, args.overrides, dotenv_path=None))
    print(f"engines: {replace(settings, sparse='seismic').describe('sparse')}; "
          f"{replace(settings, dense='hnsw').describe('dense')}; k'={settings.candidates}")
    print(f"{real_sparse.shape[0]} real documents ({real_sparse.nnz / real_sparse.shape[0]:.0f} terms each), "
          f"{len(texts)} queries; fusion {loaded.retriever.fusion.describe()}; threads {torch.get_num_threads()}")
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        started = time.perf_counter()
        extra = max(0, size - real_sparse.shape[0])
        synth_sparse, synth_dense = synthesise(real_sparse, real_dense, extra) if extra else (None, None)
        sparse = sp.vstack([real_sparse, synth_sparse]).tocsr()[:size] if extra else real_sparse[:size]
        dense = np.concatenate([real_dense, synth_dense])[:size] if extra else real_dense[:size]
        print(f"\n{size:,} documents ({extra:,} synthesised in {time.perf_counter() - started:.0f} s, "
              f"{sparse.nnz / size:.0f} terms each)")
        for row in measure(size, sparse, dense, q, settings, loaded.retriever.fusion, len(texts)):
            rows.append(row)
            print(f"  {row['index']:<52} build {row['build_s']:8.1f} s  {row['index_mb']:9.1f} MB  "
                  f"p50 {row['p50_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f} ms  recall@10 {row['recall@10']:.3f}")
        del sparse, dense, synth_sparse, synth_dense
        gc.collect()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(rows, indent=2))
    write_report(rows, out)


def write_report(rows: list[dict], out: Path) -> None:
    """scale.md (the table, with speed-ups over the exact index of the same head) and scale.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    base = {(r["documents"], r["index"].split()[0]): r["p50_ms"] for r in rows if r["index"] in
            ("sparse exact", "dense torch", "hybrid exact")}
    lines = ["| documents | index | build s | index MB | p50 ms | p95 ms | speed-up over exact | recall of exact top-10 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        speed = base[(r["documents"], r["index"].split()[0])] / max(r["p50_ms"], 1e-9)
        lines.append(f"| {r['documents']:,} | {r['index']} | {r['build_s']:.1f} | {r['index_mb']:.1f} | "
                     f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {speed:.1f}x | {r['recall@10']:.3f} |")
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    for name in dict.fromkeys(r["index"] for r in rows):
        mine = [r for r in rows if r["index"] == name]
        x = [r["documents"] for r in mine]
        for ax, key in zip(axes, ("p50_ms", "index_mb", "build_s", "recall@10")):
            shown = [(d, r[key]) for d, r in zip(x, mine) if key != "build_s" or r[key] > 0]  # exact indexes: no build
            if shown:
                ax.plot(*zip(*shown), marker="o", label=name)
    for ax, title in zip(axes, ("latency p50 (ms, one query)", "index size (MB)", "build time (s; exact: none)",
                                "recall of exact top-10")):
        ax.set_xscale("log")
        ax.set_yscale("log" if "recall" not in title else "linear")
        ax.set_title(title)
        ax.set_xlabel("documents")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=90)


if __name__ == "__main__":
    main()
