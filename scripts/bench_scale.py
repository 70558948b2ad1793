"""Search at scale: latency against recall of the exact hybrid's top-10, from 100 k to 1 M+ documents,
for every engine setting of a grid (sparse: exact, pruned documents, Seismic, BMP, with query-term
pruning; dense: HNSW, HNSW over 8-bit codes; a k' per head), with the Pareto front of each size measured end
to end against the exact hybrid in the same run.

The corpus: the real vectors of the indexes given (`hybridpqa index` folders), then documents
synthesised from them (`synthesise`): each copies a random real document's length and weights, and
keeps each of its terms with probability KEEP, the rest replaced by terms drawn in proportion to
their document frequency in the real corpus, so that document lengths and posting-list lengths stay
those of real documents; its dense vector is the real one plus Gaussian noise of NOISE times each
dimension's spread, at the real vector's norm. Queries are the real queries of a queries file,
encoded by the index's model.

How: each head's engine settings are timed one query at a time at each k' (p50), and their
candidates kept; every pair of a sparse and a dense point is fused exactly from those candidates
(its recall, no timing) and its latency estimated as the sum of the two heads';
the pairs on the estimated front are then searched end to end, one query at a time, through the
same `CorpusIndex.search` a user calls, and the measured front is reported.

    python scripts/bench_scale.py --index=output/qx-scifact,output/qx-trec-dl19-subset \\
        --queries=data/raw/scifact/queries.jsonl --sizes=100000,300000,1000000 --output=docs/scale
"""
from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from bench_engines import latency, load_index

from HybridPQA.backends import ENGINES, load
from HybridPQA.bench import machine
from HybridPQA.config import load_config
from HybridPQA.data.corpus import read_texts
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.engines import EngineSettings, build_engine_settings
from HybridPQA.retrieval.index import DenseIndex, SparseIndex
from HybridPQA.retrieval.store import fuse_candidates, union

KEEP, NOISE, CHUNK = 0.5, 0.5, 50_000
WIDTHS = (10, 25, 50, 100, 200)  # k' per head
EXACT = "exact hybrid (every document)"
# search-time settings per engine (its build parameters are the config's)
SPARSE = {"exact": [{"query_terms": t} for t in (0, 16, 8)],
          "pruned": [{"pruned": {"doc_terms": d}, "query_terms": t} for d, t in ((64, 16), (64, 8), (64, 4), (32, 16),
                                                                                  (32, 8))],
          "seismic": [{"seismic": {"query_cut": 10, "heap_factor": 0.9}}]}
DENSE = {"hnsw": [{"hnsw": {"ef_search": e}} for e in (32, 64, 128)],
         "hnsw-sq8": [{"hnsw": {"ef_search": e}} for e in (64, 128)]}


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
    return float(np.mean([len(set(a[:k]) & set(b[:k]) - {-1}) / k for a, b in zip(got, want)]))


def settings_name(engine: str, point: dict) -> str:
    flat = {**{k: v for k, v in point.items() if not isinstance(v, dict) and v}, **{k: v for d in point.values()
                                                                                     if isinstance(d, dict) for k, v in d.items()}}
    return engine + "".join(f" {k}={v}" for k, v in flat.items())


def with_point(base: EngineSettings, head: str, engine: str, point: dict) -> EngineSettings:
    """`base` with `engine` on `head` and the point's search-time parameters merged into their sections."""
    merged = {k: ({**getattr(base, k), **v} if isinstance(v, dict) else v) for k, v in point.items()}
    return replace(base, **{head: engine}, **merged)


def head_points(head: str, index, base: EngineSettings, q: dict, count: int, grid: dict, built: dict) -> list[dict]:
    """Each engine setting of `grid` on `head` at each k' (WIDTHS): candidates, p50 ms; engines built once
    (kept in `built`, {engine: built engine})."""
    points = []
    for engine, settings_list in grid.items():
        for point in settings_list:
            settings = with_point(base, head, engine, point)
            store = CorpusIndex({head: index}, settings)
            key = build_key(settings, head)
            if key in built:
                store.engines[head] = configured(built[key], settings)
            engine_obj = built[key] = store.engine(head)
            for width in WIDTHS:
                rows, _ = store.head_search(head, q[head], width)
                p50, _ = latency(lambda i: store.head_search(head, q[head][i:i + 1], width), count)
                points.append({"head": head, "engine": engine, "key": key, "point": point, "width": width, "rows": rows,
                               "p50_ms": p50, "name": f"{settings_name(engine, point)} k'={width}",
                               "build_s": engine_obj.build_seconds, "index_mb": engine_obj.nbytes / 2 ** 20})
            print(f"    {head} {settings_name(engine, point):<44} p50 at k'={WIDTHS}: "
                  + ", ".join(f"{p['p50_ms']:.2f}" for p in points[-len(WIDTHS):]) + " ms", flush=True)
    return points


def build_key(settings: EngineSettings, head: str) -> str:
    """An engine and the parameters it is built with (one build each)."""
    name = settings.engine(head)
    built_with = getattr(load(ENGINES[name].code), "BUILD", ())
    return json.dumps([name, {k: v for k, v in settings.params(head).items() if k in built_with}], sort_keys=True)


def configured(engine, settings: EngineSettings):
    """A built engine with `settings`' search-time parameters."""
    if hasattr(engine, "configure"):
        engine.configure(settings)
    return engine


def front(rows: list[dict], key: str) -> list[dict]:
    """The rows no other row beats on both `key` (lower) and recall (higher)."""
    best, out = -1.0, []
    for row in sorted(rows, key=lambda r: (r[key], -r["recall@10"])):
        if row["recall@10"] > best:
            out.append(row)
            best = row["recall@10"]
    return out


def measure(size: int, sparse: sp.csr_matrix, dense: np.ndarray, q: dict, base: EngineSettings, fusion,
            count: int) -> tuple[list[dict], list[dict]]:
    """One corpus size: the exact hybrid, each head's points, and the hybrid's measured front."""
    docids = [str(i) for i in range(size)]
    started = time.perf_counter()
    indexes = {"sparse": SparseIndex.build(sparse, docids), "dense": DenseIndex(dense, docids)}
    exact_build = time.perf_counter() - started
    exact = CorpusIndex(indexes)
    want = exact.hits(q, fusion, 10, "hybrid").rows
    one = lambda i: {h: v[i:i + 1] for h, v in q.items()}  # noqa: E731
    p50, p95 = latency(lambda i: exact.hits(one(i), fusion, 10, "hybrid"), count)
    base_mb = (indexes["sparse"].nbytes + indexes["dense"].nbytes) / 2 ** 20
    rows = [{"documents": size, "setting": EXACT, "p50_ms": p50, "p95_ms": p95,
             "recall@10": 1.0, "index_mb": base_mb, "build_s": exact_build, "front": False}]
    print(f"  exact hybrid: p50 {p50:.2f} ms, p95 {p95:.2f} ms", flush=True)
    built = {"sparse": {}, "dense": {}}
    heads = {h: head_points(h, indexes[h], base, q, count, grid, built[h]) for h, grid in (("sparse", SPARSE),
                                                                                         ("dense", DENSE))}
    candidate = CorpusIndex(indexes, replace(base, hybrid="candidates"))
    sample = candidate.fusion_sample(fusion)
    pairs = []
    for s in heads["sparse"]:
        for d in heads["dense"]:
            found = fuse_candidates(fusion, union(d["rows"], s["rows"]), sample,
                                    lambda r: candidate.exact_scores(q, r), 10)
            pairs.append({"s": s, "d": d, "recall@10": recall(found.rows, want), "estimate_ms": s["p50_ms"] + d["p50_ms"]})
    for pair in front(pairs, "estimate_ms"):
        s, d = pair["s"], pair["d"]
        settings = with_point(with_point(replace(base, hybrid="candidates", sparse_candidates=s["width"],
                                                 dense_candidates=d["width"]), "sparse", s["engine"], s["point"]),
                              "dense", d["engine"], d["point"])
        store = CorpusIndex(indexes, settings)
        store.engines = {h: configured(built[h][p["key"]], settings) for h, p in (("sparse", s), ("dense", d))}
        got = store.hits(q, fusion, 10, "hybrid").rows
        p50, p95 = latency(lambda i: store.hits(one(i), fusion, 10, "hybrid"), count)
        engines = [e for e in store.engines.values() if e.approximate]
        rows.append({"documents": size, "setting": f"{s['name']} + {d['name']}", "p50_ms": p50, "p95_ms": p95,
                     "recall@10": recall(got, want), "estimate_ms": pair["estimate_ms"],
                     "index_mb": base_mb + sum(e.nbytes for e in engines) / 2 ** 20,
                     "build_s": exact_build + sum(e.build_seconds for e in engines)})
        print(f"  {rows[-1]['setting']:<90} p50 {p50:6.2f} ms (estimate {pair['estimate_ms']:6.2f}) p95 {p95:6.2f} "
              f"recall {rows[-1]['recall@10']:.3f}", flush=True)
    measured = front([r for r in rows[1:]], "p50_ms")
    for row in rows[1:]:
        row["front"] = row in measured
    heads_rows = [{"documents": size, "setting": f"{p['head']} {p['name']}", "p50_ms": p["p50_ms"],
                   "build_s": p["build_s"], "index_mb": p["index_mb"]} for h in heads.values() for p in h]
    return rows, heads_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="comma-separated `hybridpqa index` folders (real vectors)")
    parser.add_argument("--model", help="the checkpoint of the first folder when it is an evaluation's <run>/index/<split>")
    parser.add_argument("--queries", help="queries file searched (BEIR queries.jsonl, ...)")
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--queries-count", type=int, default=100, help="queries timed one at a time per setting")
    parser.add_argument("--output", default="docs/scale", help="folder for scale.json and scale.md")
    parser.add_argument("overrides", nargs="*", help="KEY VALUE config overrides (build parameters: HNSW.M, BMP.BSIZE, ...)")
    parser.add_argument("--report", help="instead: write scale.md into --output from these scale.json files "
                        "(comma-separated runs, e.g. of different sizes)")
    args = parser.parse_args()
    if args.report:
        runs = [json.loads(Path(f).read_text()) for f in args.report.split(",")]
        write_report([r for run in runs for r in run["hybrid"]], runs[0]["machine"], Path(args.output))
        return
    folders = args.index.split(",")
    loaded = load_index(folders[0], args.model, [])
    real = [CorpusIndex.load(f) for f in folders]
    real_sparse = sp.vstack([r.indexes["sparse"].by_doc for r in real]).tocsr()
    real_dense = np.concatenate([np.asarray(r.indexes["dense"].vectors) for r in real])
    texts = list(read_texts(args.queries, "query").values())[:args.queries_count]
    q = loaded.retriever.encode_queries(texts).reps
    base = build_engine_settings(load_config(None, args.overrides, dotenv_path=None))
    info = machine()
    print(f"{info['cpu']}, {info['threads']} threads; {real_sparse.shape[0]} real documents "
          f"({real_sparse.nnz / real_sparse.shape[0]:.0f} terms each), {len(texts)} queries "
          f"({q['sparse'].nnz / len(texts):.0f} terms each); fusion {loaded.retriever.fusion.describe()}")
    hybrid, heads = [], []
    for size in [int(s) for s in args.sizes.split(",")]:
        extra = max(0, size - real_sparse.shape[0])
        synth_sparse, synth_dense = synthesise(real_sparse, real_dense, extra) if extra else (None, None)
        sparse = sp.vstack([real_sparse, synth_sparse]).tocsr()[:size] if extra else real_sparse[:size]
        dense = np.concatenate([real_dense, synth_dense])[:size] if extra else real_dense[:size]
        print(f"\n{size:,} documents ({sparse.nnz / size:.0f} terms each)", flush=True)
        found, per_head = measure(size, sparse, dense, q, base, loaded.retriever.fusion, len(texts))
        hybrid += found
        heads += per_head
        del sparse, dense, synth_sparse, synth_dense
        gc.collect()
        out = Path(args.output)  # written after each size: a later size that runs out of memory loses only itself
        out.mkdir(parents=True, exist_ok=True)
        (out / "scale.json").write_text(json.dumps({"machine": info, "hybrid": hybrid, "heads": heads}, indent=2))
        write_report(hybrid, info, out)


def write_report(rows: list[dict], info: dict, out: Path) -> None:
    """scale.md: per size, the exact hybrid and the measured front, speed-ups over the exact hybrid."""
    lines = [f"Measured on {info['cpu']}, {info['threads']} threads.", "",
             "| documents | setting | p50 ms | p95 ms | speed-up over exact | recall of exact hybrid top-10 | "
             "index MB | build s |", "|---|---|---|---|---|---|---|---|"]
    exact = {r["documents"]: r["p50_ms"] for r in rows if r["setting"] == EXACT}
    for r in rows:
        if r["setting"] == EXACT or r["front"]:
            lines.append(f"| {r['documents']:,} | {r['setting']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                         f"{exact[r['documents']] / r['p50_ms']:.1f}x | {r['recall@10']:.3f} | {r['index_mb']:.0f} | "
                         f"{r['build_s']:.0f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
