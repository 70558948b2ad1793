"""Indexes, fusion and their commands: exact against brute force and against ranx itself."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from ranx import Run, fuse

from HybridPQA.cli import main
from HybridPQA.data import carve_val, with_hard_negatives
from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError
from HybridPQA.data.trec import read_trec
from HybridPQA.retrieval.fusion import tune
from HybridPQA.scoring import Fusion, normalize, ranks
from HybridPQA.retrieval.index import DenseIndex, SparseIndex
from HybridPQA.retrieval.kernels import top_k

REPO = Path(__file__).resolve().parents[1]


def random_sparse(rows: int, seed: int, density: float = 0.05) -> sp.csr_matrix:
    return sp.random(rows, 500, density=density, random_state=seed, format="csr", dtype=np.float32)


def memory_mapped(array) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = getattr(array, "base", None)
    return False


def test_sparse_index_is_exact_and_memory_maps(tmp_path):
    docs, queries = random_sparse(300, 0), random_sparse(7, 1, 0.03)
    index = SparseIndex.build(docs, [f"d{i}" for i in range(300)], terms=[f"t{i}" for i in range(500)])
    brute = queries.toarray() @ docs.toarray().T
    assert np.allclose(index.scores(queries), brute, atol=1e-5)
    ids, _ = index.search(queries, 10)
    assert np.array_equal(ids, np.argsort(-brute, axis=1, kind="stable")[:, :10])
    index.save(tmp_path / "sparse")
    loaded = SparseIndex.load(tmp_path / "sparse")
    assert all(memory_mapped(a) for a in (loaded.by_term.data, loaded.by_term.indices, loaded.by_term.indptr))
    assert loaded.nbytes == index.nbytes > 0 and loaded.terms == index.terms
    assert np.array_equal(loaded.search(queries, 10)[0], ids)
    with pytest.raises(InputError, match="not 'sparse'"):
        (tmp_path / "dense").mkdir()
        (tmp_path / "dense" / "meta.json").write_text(json.dumps({"kind": "dense"}))
        SparseIndex.load(tmp_path / "dense")


def test_sparse_search_from_the_postings_ranks_as_every_document():
    """The compiled accumulate-and-heap top-k: ties (exact in float32: weights in quarters) by lower row,
    an empty query and one touching fewer than k documents filled by lower rows at score 0, as a
    full top-k over every document; negative weights take the full path."""
    rng = np.random.default_rng(3)
    docs = random_sparse(400, 2)
    docs.data = np.ceil(docs.data * 4).astype(np.float32) / 4
    queries = sp.csr_matrix(np.array([[0] * 500, [0.5 if t in (7, 9) else 0 for t in range(500)],
                                      *(rng.integers(0, 3, 500) * (rng.random(500) < 0.05) / 2 for _ in range(6))],
                                     dtype=np.float32))
    index = SparseIndex.build(docs, [f"d{i}" for i in range(400)])
    brute = queries.toarray() @ docs.toarray().T
    want = np.lexsort((np.broadcast_to(np.arange(400), brute.shape), -brute), axis=1)
    for k in (1, 10, 400):
        ids, values = index.search(queries, k)
        assert np.array_equal(ids, want[:, :k]), k
        assert np.allclose(values, np.take_along_axis(brute, want[:, :k], 1))
    negative = SparseIndex.build(sp.csr_matrix(docs.multiply(-1)), [f"d{i}" for i in range(400)])
    assert np.array_equal(negative.search(queries, 5)[0], top_k(-brute, 5)[0])


def test_top_k_breaks_ties_by_column():
    ids, values = top_k(np.array([[1.0, 3.0, 3.0, 0.0, 3.0]]), 3)
    assert ids.tolist() == [[1, 2, 4]] and values.tolist() == [[3.0, 3.0, 3.0]]


def test_dense_index_is_exact_and_reloads(tmp_path):
    docs, queries = torch.randn(200, 16), torch.randn(5, 16)
    index = DenseIndex.build(docs, [str(i) for i in range(200)])
    ids, values = index.search(queries, 20)
    brute = (queries @ docs.T).numpy()
    assert np.array_equal(ids, np.argsort(-brute, axis=1)[:, :20])
    assert np.allclose(values, np.sort(brute, axis=1)[:, ::-1][:, :20], atol=1e-5)
    index.save(tmp_path / "dense")
    assert np.array_equal(DenseIndex.load(tmp_path / "dense").search(queries, 20)[0], ids)


def full_runs(matrix: np.ndarray) -> Run:
    return Run({f"q{i}": {f"d{j}": float(v) for j, v in enumerate(row)} for i, row in enumerate(matrix)})


@pytest.mark.parametrize("norm,ranx_norm", [("none", None), ("min-max", "min-max"), ("z-score", "zmuv")])
def test_linear_fusion_matches_ranx(norm, ranx_norm):
    rng = np.random.default_rng(0)
    dense, sparse = rng.normal(size=(4, 30)) * 10, np.abs(rng.normal(size=(4, 30)))
    ours = Fusion("linear", norm, alpha=0.3).fuse(dense, sparse)
    theirs = fuse([full_runs(dense), full_runs(sparse)], norm=ranx_norm, method="wsum",
                  params={"weights": [0.3, 0.7]}).to_dict()
    for i in range(4):
        assert np.allclose([theirs[f"q{i}"][f"d{j}"] for j in range(30)], ours[i], atol=1e-5)


def test_rrf_matches_ranx_and_hand_values():
    assert ranks(np.array([[3.0, 1.0, 3.0, 2.0]])).tolist() == [[1, 4, 2, 3]]
    assert np.allclose(Fusion("rrf", rrf_k=10).fuse(np.array([[2.0, 1.0]]), np.array([[1.0, 2.0]])),
                       [[1 / 11 + 1 / 12, 1 / 12 + 1 / 11]])
    rng = np.random.default_rng(1)
    dense, sparse = rng.normal(size=(3, 25)), rng.normal(size=(3, 25))
    ours = Fusion("rrf", rrf_k=60).fuse(dense, sparse)
    theirs = fuse([full_runs(dense), full_runs(sparse)], norm=None, method="rrf", params={"k": 60}).to_dict()
    assert np.allclose([[theirs[f"q{i}"][f"d{j}"] for j in range(25)] for i in range(3)], ours)


def test_normalize_is_per_query():
    scores = np.array([[1.0, 3.0, 5.0], [10.0, 10.0, 10.0]])
    assert np.allclose(normalize(scores, "min-max"), [[0, 0.5, 1], [0, 0, 0]])
    assert np.allclose(normalize(scores, "z-score")[0], (scores[0] - 3) / np.std(scores[0]))


def test_val_carved_from_train_is_stable_and_disjoint():
    data = RankingData("train", {f"q{i}": "text" for i in range(500)}, {"d": "doc"},
                       {f"q{i}": {"d": 1} for i in range(500)})
    train, val = carve_val(data, 0.1)
    again = carve_val(data, 0.1)[1]
    assert set(val.queries) == set(again.queries) and not set(val.queries) & set(train.queries)
    assert len(train.queries) + len(val.queries) == 500 and 30 < len(val.queries) < 70
    assert val.docs == data.docs and set(val.qrels) == set(val.queries)


def test_hard_negatives_come_from_the_run_without_positives():
    data = RankingData("train", {"q1": "a", "q2": "b"}, {d: d for d in "abcdef"}, {"q1": {"a": 1}, "q2": {"b": 1}})
    mined = with_hard_negatives(data, {"q1": {"a": 9.0, "c": 5.0, "d": 7.0, "zz": 8.0}}, 2, "run.trec")
    assert mined.candidates["q1"] == ["a", "d", "c"]  # the positive, then the top 2 others the data has
    assert mined.candidates["q2"] == ["b"]
    with pytest.raises(InputError, match="run.trec: none of the 2 questions of train is in this run"):
        with_hard_negatives(data, {"q9": {"a": 1.0}}, 5, "run.trec")


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_evaluate_tune_fuse_and_export_agree(tmp_path, splade_tiny, small_beir):
    """Corpus retrieval with z-score fusion: the hybrid run equals `hybridpqa fuse` of the dense and
    sparse runs (ranx, every document of each query kept), and the efficiency block and the
    saved index are complete."""
    out = tmp_path / "out"
    results = main(["evaluate", f"--output={out}", f"--data={small_beir}", "--split=test", "--env=none",
                    f"--config={REPO / 'configs' / 'zero_shot_scifact.yaml'}",
                    "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "RETRIEVER.MODEL.BIENCODER_TYPE",
                    "hybrid", "RETRIEVER.SOLVER.FUNC", "cosine", "FUSION.NORM", "z-score", "SOLVER.ALPHA", "0.2",
                    "SOLVER.TOP_RETRIEVE_COUNT", "1000", "RETRIEVER.COMPUTE_FLOPS", "False"])["test"]
    run_dir = out / "zero_shot_scifact"
    eff = results["efficiency"]
    assert eff["corpus"]["docs_per_s"] > 0 and eff["corpus"]["peak_rss_mb"] > 0
    assert eff["sparse"]["index_bytes"] > 0 and eff["hybrid"]["index_bytes"] > eff["sparse"]["index_bytes"]
    assert eff["sparse"]["expected_flops_per_pair"] > 0 and "latency_ms_p95" in eff["dense"]
    runs = run_dir / "runs"
    fused = tmp_path / "fused.trec"
    report = main(["fuse", f"--runs={runs / 'test.dense.trec'},{runs / 'test.sparse.trec'}", f"--output={fused}",
                   "--norm=z-score", "--alpha=0.2", f"--qrels={small_beir / 'qrels' / 'test.tsv'}"])
    ours, theirs = read_trec(runs / "test.hybrid.trec"), read_trec(fused)
    assert ours.keys() == theirs.keys()
    for qid in ours:
        assert ours[qid].keys() == theirs[qid].keys()
        # the written dense and sparse runs have untied scores (a tied run of n zeros spans n * 1e-6)
        assert np.allclose([ours[qid][d] for d in ours[qid]], [theirs[qid][d] for d in ours[qid]], atol=1e-2)
    assert report["metrics"][str(fused)]["ndcg@10"] == pytest.approx(results["metrics"]["hybrid"]["ndcg@10"], abs=1e-4)
    tuned = main(["fuse", f"--runs={runs / 'test.dense.trec'},{runs / 'test.sparse.trec'}", f"--output={fused}",
                  "--norm=z-score", "--tune", f"--qrels={small_beir / 'qrels' / 'test.tsv'}"])
    assert tuned["metrics"][str(fused)]["ndcg@10"] >= report["metrics"][str(fused)]["ndcg@10"] - 1e-9
    counts = main(["export", f"--index={run_dir / 'index' / 'test' / 'sparse'}", f"--output={tmp_path / 'pyserini'}"])
    lines = (tmp_path / "pyserini" / "corpus" / "docs.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == counts["documents"] == results["documents"] and counts["queries"] == 40
    assert set(first) == {"id", "contents", "vector"} and all(isinstance(v, int) and v > 0 for v in first["vector"].values())
    qid, terms = (tmp_path / "pyserini" / "queries.tsv").read_text().splitlines()[0].split("\t")
    assert qid and len(terms.split()) > 10


def test_fuse_and_export_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fuse", "--runs=a.trec", f"--output={tmp_path / 'x'}"])
    assert "at least two" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", f"--index={tmp_path}", f"--output={tmp_path / 'x'}"])
    assert "meta.json missing" in capsys.readouterr().err


def test_tune_picks_the_best_weight_and_breaks_ties_toward_the_config():
    dense = {"q1": {"a": 1.0, "b": 0.5, "c": 0.1}, "q2": {"a": 0.2, "b": 0.9, "c": 0.3}}
    sparse = {"q1": {"a": 0.1, "b": 0.5, "c": 0.9}, "q2": {"a": 0.2, "b": 0.1, "c": 0.3}}
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    tuned, trials = tune(dense, sparse, qrels, Fusion(norm="min-max", alpha=0.2), "ndcg@10", step=0.25)
    assert trials["alpha=0.75"] == trials["alpha=1"] == 1.0 > trials["alpha=0.5"]
    assert tuned.alpha == 0.75  # of the two best, the one closest to the configured 0.2
    tuned, trials = tune(dense, sparse, qrels, Fusion("rrf", rrf_k=30), "ndcg@10")
    assert len(trials) == 10 and tuned.rrf_k == 30  # every k ties here: keep the configured one


def test_missing_or_malformed_run_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="TREC run not found"):
        read_trec(tmp_path / "missing.trec")
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1 0.5 tag\nq1 Q0 d2 2 high tag\n")
    with pytest.raises(InputError, match=r"bad.trec:2: score 'high' is not a number"):
        read_trec(tmp_path / "bad.trec")


def test_fuse_tunes_on_a_pairs_split_s_own_labels(product_qa, tmp_path):
    """--qrels may be a pairs split (.json): its labels are the judgements, as in compare_runs.py."""
    from HybridPQA.data.trec import read_judgements, write_trec

    judged = read_judgements(product_qa / "dev.json")
    assert judged and all(isinstance(r, int) for docs in judged.values() for r in docs.values())
    good = {q: {d: float(r) + 0.01 * i for i, (d, r) in enumerate(docs.items())} for q, docs in judged.items()}
    noise = {q: {d: float(i % 3) for i, d in enumerate(docs)} for q, docs in judged.items()}
    write_trec(good, tmp_path / "good.trec", "good")
    write_trec(noise, tmp_path / "noise.trec", "noise")
    report = main(["fuse", f"--runs={tmp_path / 'good.trec'},{tmp_path / 'noise.trec'}", f"--output={tmp_path / 'f.trec'}",
                   "--norm=z-score", "--tune", "--metric=mrr@5", f"--qrels={product_qa / 'dev.json'}"])
    assert report["fusion"]["alpha"] >= 0.5 and report["metrics"][str(tmp_path / "f.trec")]["mrr@5"] > 0.9
