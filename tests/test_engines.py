"""Approximate engines (Seismic, FAISS HNSW / IVF-PQ) and the candidate hybrid, against the exact
index and brute force; the `approximate` report of an evaluation on a real SciFact slice."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from HybridPQA.cli import main
from HybridPQA.config import load_config
from HybridPQA.errors import InputError
from HybridPQA.evaluation.approximate import exact_recall
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.store import union
from HybridPQA.retrieval.engines import EngineSettings, build_engine, build_engine_settings
from HybridPQA.scoring import Fusion

REPO = Path(__file__).resolve().parents[1]
N, V, D = 400, 300, 16
DEFAULTS = build_engine_settings(load_config(None, [], dotenv_path=None))


def corpus(settings: EngineSettings, seed: int = 0) -> tuple[CorpusIndex, dict]:
    rng = np.random.default_rng(seed)
    docs = sp.random(N, V, density=0.08, random_state=seed, format="csr", dtype=np.float32)
    queries = sp.random(6, V, density=0.05, random_state=seed + 1, format="csr", dtype=np.float32)
    docids = [f"d{i}" for i in range(N)]
    index = CorpusIndex.build({"sparse": docs, "dense": torch.from_numpy(rng.normal(size=(N, D)).astype(np.float32))},
                              docids, settings)
    return index, {"sparse": queries, "dense": torch.from_numpy(rng.normal(size=(6, D)).astype(np.float32))}


def settings(**kw) -> EngineSettings:
    return EngineSettings(**{**{f: getattr(DEFAULTS, f) for f in ("seismic", "bmp", "pruned", "hnsw", "ivf")}, **kw})


def test_candidate_scores_are_exact():
    index, q = corpus(EngineSettings())
    rows = np.array([[5, -1, 17, 399]] * 6)
    for head in ("sparse", "dense"):
        full = index.indexes[head].scores(q[head])
        got = index.indexes[head].candidate_scores(q[head], rows)
        assert np.allclose(got[:, [0, 2, 3]], full[:, [5, 17, 399]], atol=1e-5) and (got[:, 1] == 0).all()


def test_union_keeps_each_document_once():
    got = union(np.array([[3, 1, -1], [2, 2, 0]]), np.array([[1, 4, 5], [-1, -1, -1]]))
    assert [sorted(r[r >= 0].tolist()) for r in got] == [[1, 3, 4, 5], [0, 2]]


@pytest.mark.parametrize("fusion", [Fusion("linear", "none", 0.3), Fusion("linear", "z-score", 0.6),
                                    Fusion("linear", "min-max", 0.5), Fusion("rrf")])
def test_candidate_hybrid_over_every_document_is_the_exact_hybrid(fusion):
    exact, q = corpus(EngineSettings())
    qids = [f"q{i}" for i in range(6)]
    want = exact.search(q, qids, fusion, 20)
    for sample in (0, N):  # the union is every document; so is the sample
        got = CorpusIndex(exact.indexes, EngineSettings(hybrid="candidates", candidates=N, norm_sample=sample)) \
            .search(q, qids, fusion, 20)
        _same_runs(got, want, qids)


def _same_runs(got, want, qids):
    for scorer in ("hybrid", "dense", "sparse"):
        for qid in qids:
            assert list(got[scorer][qid]) == list(want[scorer][qid]), (scorer, qid)
            assert np.allclose(list(got[scorer][qid].values()), list(want[scorer][qid].values()), atol=1e-4)


@pytest.mark.parametrize("norm", ["z-score", "min-max"])
@pytest.mark.parametrize("sample", [0, N])
def test_candidate_hybrid_fuses_the_union_with_the_sample_statistics(norm, sample):
    """k' = 10: the hybrid top-5 is the fused top of the two heads' top-10 union; normalised over the
    union itself (NORM_SAMPLE 0) or, with every document as the sample, with the corpus statistics."""
    exact, q = corpus(EngineSettings())
    fusion, qids = Fusion("linear", norm, 0.5), [f"q{i}" for i in range(6)]
    got = CorpusIndex(exact.indexes, EngineSettings(hybrid="candidates", candidates=10, norm_sample=sample)) \
        .search(q, qids, fusion, 5)
    dense, sparse = exact.all_scores(q)["dense"], exact.all_scores(q)["sparse"]
    corpus_fused = fusion.fuse(dense, sparse)
    for i, qid in enumerate(qids):
        union = sorted(set(np.argsort(-dense[i])[:10]) | set(np.argsort(-sparse[i], kind="stable")[:10]))
        fused = fusion.fuse(dense[i, union][None], sparse[i, union][None])[0] if sample == 0 else corpus_fused[i, union]
        want = [f"d{union[j]}" for j in np.argsort(-fused, kind="stable")[:5]]
        assert list(got["hybrid"][qid]) == want
        assert np.allclose(list(got["hybrid"][qid].values()), np.sort(fused)[::-1][:5], atol=1e-4)


def test_faiss_engines_find_the_exact_neighbours():
    index, q = corpus(EngineSettings())
    want, _ = index.indexes["dense"].search(q["dense"], 10)
    for name, floor in (("faiss", 1.0), ("hnsw", 0.95)):
        engine = build_engine("dense", index.indexes["dense"], settings(dense=name))
        got, _ = engine.search(q["dense"], 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
        assert recall >= floor, name
        assert engine.approximate == (name != "faiss") and engine.nbytes > 0
    ivf = build_engine("dense", index.indexes["dense"], settings(dense="ivf-pq", ivf={**DEFAULTS.ivf, "nlist": 4,
                                                                                         "nprobe": 4, "pq_m": 4, "pq_bits": 4}))
    got, _ = ivf.search(q["dense"], 10)
    assert ((got >= 0) & (got < N)).all() and np.mean([len(set(a) & set(b)) for a, b in zip(got, want)]) >= 3


def test_seismic_without_pruning_finds_the_exact_top_10():
    pytest.importorskip("seismic")
    index, q = corpus(EngineSettings())
    params = {**DEFAULTS.seismic, "n_postings": N, "query_cut": V, "heap_factor": 1.0}
    engine = build_engine("sparse", index.indexes["sparse"], settings(sparse="seismic", seismic=params))
    got, values = engine.search(q["sparse"], 10)
    want, _ = index.indexes["sparse"].search(q["sparse"], 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]) >= 0.98
    full = index.indexes["sparse"].scores(q["sparse"])
    assert np.allclose(values, np.take_along_axis(full, got, 1), rtol=2e-3, atol=1e-3)  # Seismic keeps float16 values
    assert engine.nbytes > 0 and engine.build_seconds > 0


def test_bmp_exact_finds_the_exact_top_10_and_pruned_stays_close(tmp_path):
    """BMP at THRESHOLD = QUERY_SHARE = 1 finds the exact top-10 but for ties of its 8-bit impacts, each hit
    re-scored exactly; pruned, it still finds most of it. Saved and loaded, it searches the same index."""
    pytest.importorskip("bmp")
    index, q = corpus(EngineSettings())
    want, _ = index.indexes["sparse"].search(q["sparse"], 10)
    engine = build_engine("sparse", index.indexes["sparse"], settings(sparse="bmp", bmp={**DEFAULTS.bmp, "bsize": 8}))
    got, values = engine.search(q["sparse"], 10)
    full = index.indexes["sparse"].scores(q["sparse"])
    assert np.allclose(values, np.take_along_axis(full, got, 1), atol=1e-5) and engine.nbytes > 0
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]) >= 0.95
    engine.save(tmp_path)
    loaded = type(engine)(index.indexes["sparse"], settings(sparse="bmp", bmp={**DEFAULTS.bmp, "threshold": 0.7, "query_share": 0.7}),
                          tmp_path)
    pruned, _ = loaded.search(q["sparse"], 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(pruned, want)]) >= 0.5


def test_query_term_pruning_searches_each_querys_largest_terms():
    from HybridPQA.retrieval.kernels import keep_largest as prune_queries

    q = sp.csr_matrix(np.array([[0.1, 0.9, 0.0, 0.5, 0.3], [0.0, 0.0, 0.0, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0, 0.0]],
                               dtype=np.float32))
    kept = prune_queries(q, 2).toarray()
    assert kept.tolist() == np.array([[0, 0.9, 0, 0.5, 0], [0] * 5, [0.2, 0, 0, 0, 0]], dtype=np.float32).tolist()
    exact, queries = corpus(EngineSettings())
    pruned = CorpusIndex(exact.indexes, EngineSettings(query_terms=3))
    assert not pruned.exact_head("sparse") and exact.exact_head("sparse")
    rows, _ = pruned.head_search("sparse", queries["sparse"], 10)
    want, _ = exact.indexes["sparse"].search(prune_queries(queries["sparse"], 3), 10)
    assert (rows == want).all()


def test_each_head_gives_the_candidate_hybrid_its_own_k():
    """k' per head: with every document from the dense head, the union is the corpus whatever the
    sparse head's k', so the hybrid is exact."""
    exact, q = corpus(EngineSettings())
    fusion, qids = Fusion("linear", "none", 0.4), [f"q{i}" for i in range(6)]
    want = exact.search(q, qids, fusion, 10, ("hybrid",))
    one_sided = CorpusIndex(exact.indexes, EngineSettings(hybrid="candidates", candidates=5, dense_candidates=N))
    assert one_sided.width("sparse") == 5 and one_sided.width("dense") == N
    got = one_sided.search(q, qids, fusion, 10, ("hybrid",))
    for qid in qids:
        assert list(got["hybrid"][qid]) == list(want["hybrid"][qid])
        assert np.allclose(list(got["hybrid"][qid].values()), list(want["hybrid"][qid].values()), atol=1e-5)


def test_pruned_documents_find_the_top_10_and_rescore_it_exactly(tmp_path):
    """The inverted index of each document's largest weights: with every weight kept it is the exact
    index; with few kept, its hits still carry their exact (full-vector) scores."""
    index, q = corpus(EngineSettings())
    full = index.indexes["sparse"].scores(q["sparse"])
    want, want_values = index.indexes["sparse"].search(q["sparse"], 10)
    whole = build_engine("sparse", index.indexes["sparse"], settings(sparse="pruned", pruned={"doc_terms": V}))
    got, values = whole.search(q["sparse"], 10)
    assert (got == want).all() and np.allclose(values, want_values)
    few = build_engine("sparse", index.indexes["sparse"], settings(sparse="pruned", pruned={"doc_terms": 8}),
                       tmp_path, "f")
    got, values = few.search(q["sparse"], 10)
    assert np.allclose(values, np.take_along_axis(full, got, 1), atol=1e-5) and few.nbytes < whole.nbytes
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]) >= 0.5
    again = build_engine("sparse", index.indexes["sparse"], settings(sparse="pruned", pruned={"doc_terms": 8}),
                         tmp_path, "f")
    assert (again.search(q["sparse"], 10)[0] == got).all() and again.load_seconds >= 0


def test_hnsw_sq8_rescores_its_hits_exactly():
    index, q = corpus(EngineSettings())
    engine = build_engine("dense", index.indexes["dense"], settings(dense="hnsw-sq8"))
    got, values = engine.search(q["dense"], 10)
    full = index.indexes["dense"].scores(q["dense"])
    assert np.allclose(values, np.take_along_axis(full, got, 1), atol=1e-5)
    assert (np.diff(values, axis=1) <= 0).all()
    want, _ = index.indexes["dense"].search(q["dense"], 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]) >= 0.9


def test_engine_settings_are_checked():
    for key, value in (("RETRIEVER.INDEX.SPARSE", "hnsw"), ("RETRIEVER.INDEX.HYBRID", "union"),
                       ("RETRIEVER.INDEX.CANDIDATES", "0"), ("RETRIEVER.INDEX.SEISMIC.HEAP_FACTOR", "1.5"),
                       ("RETRIEVER.INDEX.BMP.THRESHOLD", "0.0"), ("RETRIEVER.INDEX.QUERY_TERMS", "-1")):
        with pytest.raises(InputError, match=key.split(".")[-1]):
            load_config(None, [key, value], dotenv_path=None)
    index, _ = corpus(EngineSettings())
    with pytest.raises(InputError, match="PQ_M"):
        build_engine("dense", index.indexes["dense"], settings(dense="ivf-pq", ivf={**DEFAULTS.ivf, "pq_m": 5}))


def test_exact_recall():
    exact = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    assert exact_recall({"q": {"a": 1.0, "c": 0.5, "x": 0.1}}, exact, 2) == 0.5


@pytest.mark.slow  # trains or evaluates end to end
def test_evaluate_reports_the_approximate_engines_on_scifact(splade_tiny, small_beir, tmp_path):
    """Seismic + HNSW + the candidate hybrid on a real SciFact slice: results carry the report, and
    on 341 abstracts the approximate runs keep nearly all of the exact top-10."""
    results = main(["evaluate", f"--output={tmp_path}", f"--data={small_beir}", "--split=test", "--env=none",
                    f"--config={REPO / 'configs' / 'zero_shot_scifact.yaml'}", "RETRIEVER.COMPUTE_FLOPS", "False",
                    "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "RETRIEVER.INDEX.SPARSE", "seismic",
                    "RETRIEVER.INDEX.DENSE", "hnsw", "RETRIEVER.INDEX.HYBRID", "candidates"])["test"]
    report = json.loads((tmp_path / "zero_shot_scifact" / "results" / "test.json").read_text())["approximate"]
    assert report == json.loads(json.dumps(results["approximate"]))
    assert set(report) == {"hybrid", "dense", "sparse"}
    for scorer, entry in report.items():
        assert entry["recall_of_exact@10"] >= 0.9, scorer
        assert abs(entry["metrics_change"]["ndcg@10"]) < 0.02 and entry["search_ms_p50_approximate"] > 0
        assert all(entry["index_bytes"].values()) and "build_seconds" in entry
    assert report["sparse"]["engines"]["sparse"].startswith("seismic n_postings=1000")


def test_approximate_engines_are_built_once_and_kept_in_the_index_folder(tmp_path, monkeypatch, caplog):
    """A saved index keeps the Seismic and HNSW engines it was searched with; the next load reads them
    (no build) and ranks the same; other build parameters get their own engine."""
    import faiss
    import seismic

    built, _ = corpus(EngineSettings())
    built.save(tmp_path)
    chosen = settings(sparse="seismic", dense="hnsw", hybrid="candidates", candidates=50)
    first = CorpusIndex.load(tmp_path, chosen)
    _, q = corpus(EngineSettings())
    fusion, qids = Fusion(alpha=0.5, norm="z-score"), [f"q{i}" for i in range(6)]
    assert first.ready(("hybrid",)).keys() == {"sparse", "dense"}
    want = first.search(q, qids, fusion, 10)
    kept = sorted(p.name.split("-")[:2] for p in (tmp_path / "engines").iterdir())
    assert kept == [["dense", "hnsw"], ["sparse", "seismic"]]
    assert all((p / "engine.json").is_file() for p in (tmp_path / "engines").iterdir())

    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(seismic.SeismicIndex, "build_from_dataset", no_build)
    monkeypatch.setattr(faiss, "IndexHNSWFlat", no_build)
    with caplog.at_level("INFO"):
        again = CorpusIndex.load(tmp_path, chosen)
        assert again.search(q, qids, fusion, 10) == want
    assert sum("loaded from" in r.getMessage() for r in caplog.records) == 2
    other = settings(sparse="seismic", seismic={**DEFAULTS.seismic, "n_postings": 50})
    monkeypatch.undo()
    CorpusIndex.load(tmp_path, other).ready(("sparse",))
    assert len(list((tmp_path / "engines").glob("sparse-seismic-*"))) == 2


def test_dropping_kept_engines_removes_only_ours(tmp_path):
    from HybridPQA.retrieval.engines import drop_engines

    ours, foreign = tmp_path / "engines" / "sparse-seismic-abc", tmp_path / "engines" / "notes"
    ours.mkdir(parents=True)
    foreign.mkdir()
    (ours / "engine.json").write_text(json.dumps({"head": "sparse", "engine": "seismic", "params": {}}))
    (foreign / "engine.json").write_text("not json")
    drop_engines(tmp_path / "engines")
    assert not ours.exists() and (foreign / "engine.json").read_text() == "not json"
