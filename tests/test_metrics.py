"""ranx metrics on a hand-made run, and the TREC round trip."""
import math

import numpy as np
import pytest

from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError
from HybridPQA.evaluation.metrics import per_source, score_run
from HybridPQA.data.trec import read_trec, write_trec
from HybridPQA.scoring import ranking

QRELS = {"q1": {"a": 1, "b": 0, "c": 1}, "q2": {"x": 0, "y": 1}, "q3": {"z": 0}}
RUN = {"q1": {"a": 0.2, "b": 0.9, "c": 0.1}, "q2": {"x": 0.5, "y": 0.4}, "q3": {"z": 1.0}}


def test_metrics_by_hand():
    m = score_run(RUN, QRELS, ["mrr@5", "map", "precision@1", "hit_rate@5", "r-precision", "ndcg@5"])
    # q1 ranking b a c: first positive at 2; AP = (1/2 + 2/3) / 2; R-prec (R=2) = 1/2
    # q2 ranking x y: first positive at 2; AP = 1/2; R-prec (R=1) = 0; q3 has no positive: not scored
    assert math.isclose(m["mrr@5"], 0.5)
    assert math.isclose(m["map"], ((0.5 + 2 / 3) / 2 + 0.5) / 2)
    assert m["precision@1"] == 0.0 and m["hit_rate@5"] == 1.0
    assert math.isclose(m["r-precision"], 0.25)
    idcg1 = 1 + 1 / math.log2(3)
    ndcg1 = (1 / math.log2(3) + 1 / math.log2(4)) / idcg1
    assert math.isclose(m["ndcg@5"], (ndcg1 + 1 / math.log2(3)) / 2, rel_tol=1e-6)


def test_ties_are_broken_by_docid_not_input_order():
    qrels = {"q": {"b": 1}}
    assert score_run({"q": {"b": 0.0, "a": 0.0}}, qrels, ["mrr@5"])["mrr@5"] == 0.5
    assert score_run({"q": {"a": 0.0, "b": 0.0}}, qrels, ["mrr@5"])["mrr@5"] == 0.5


def test_per_source_ranks_within_source():
    data = RankingData("t", {"q1": "?"}, {"a": "", "b": "", "c": ""}, {"q1": {"a": 1, "b": 0, "c": 1}},
                       {"q1": ["a", "b", "c"]}, {"a": "review", "b": "review", "c": "CQA"})
    out = per_source({"q1": {"a": 0.2, "b": 0.9, "c": 0.1}}, data, ["mrr@5"])
    assert out["review"] == {"mrr@5": 0.5, "count": 1}
    assert out["CQA"] == {"mrr@5": 1.0, "count": 1}


def test_trec_round_trip_and_tie_break(tmp_path):
    """Ties go by docid, and the written scores leave none: b is written one unit (1e-6) below a."""
    run = {"q1": {"b": 1.0, "a": 1.0, "c": 2.5}, "q2": {"x": -1.0}}
    write_trec(run, tmp_path / "r.trec", "tag")
    lines = (tmp_path / "r.trec").read_text().splitlines()
    assert lines[:3] == ["q1 Q0 c 1 2.500000 tag", "q1 Q0 a 2 1.000000 tag", "q1 Q0 b 3 0.999999 tag"]
    assert read_trec(tmp_path / "r.trec") == {"q1": {"c": 2.5, "a": 1.0, "b": 0.999999}, "q2": {"x": -1.0}}
    assert ranking(read_trec(tmp_path / "r.trec")["q1"]) == ranking(run["q1"])  # idempotent


def test_ranking_never_ties_and_keeps_the_order():
    scores = {"d": 0.0, "a": 0.0, "c": 1e-8, "b": 0.3000004, "e": 0.3000001, "f": 0.0}
    ranked = ranking(scores)
    assert [d for d, _ in ranked] == ["b", "e", "c", "a", "d", "f"]
    values = [v for _, v in ranked]
    assert all(x > y for x, y in zip(values, values[1:]))
    assert max(abs(scores[d] - v) for d, v in ranked) < 1e-5


def test_written_runs_score_the_same_in_trec_eval_and_here(tmp_path):
    """A run full of ties (most candidates score exactly 0, as BM25's do): pytrec_eval (trec_eval,
    which re-sorts ties by docid descending) and our ranx metrics agree on the written file."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(0)
    run, qrels = {}, {}
    for q in range(60):
        docs = [f"d{q}_{i}" for i in range(rng.integers(5, 15))]
        run[f"q{q}"] = {d: float(rng.choice([0.0, 0.0, 0.0, 1.5, 2.0])) for d in docs}
        qrels[f"q{q}"] = {d: 1 for d in rng.choice(docs, size=rng.integers(1, 3), replace=False)}
    write_trec(run, tmp_path / "r.trec", "tag")
    written = read_trec(tmp_path / "r.trec")
    ours = score_run(written, qrels, ["map", "ndcg@5", "ndcg@10", "precision@1", "mrr"])
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"map", "ndcg_cut.5,10", "P.1", "recip_rank"}).evaluate(written)
    mean = {m: float(np.mean([v[m] for v in theirs.values()])) for m in next(iter(theirs.values()))}
    pairs = {"map": "map", "ndcg@5": "ndcg_cut_5", "ndcg@10": "ndcg_cut_10", "precision@1": "P_1", "mrr": "recip_rank"}
    for name, key in pairs.items():
        assert ours[name] == pytest.approx(mean[key], abs=1e-4), name
    tied = pytrec_eval.RelevanceEvaluator(qrels, {"map"}).evaluate(run)  # the raw scores, ties and all
    assert abs(np.mean([v["map"] for v in tied.values()]) - ours["map"]) > 1e-3  # ties do move trec_eval


def test_bad_trec_line_names_file_and_line(tmp_path):
    (tmp_path / "bad.trec").write_text("q1 Q0 a 1 0.5 tag\nq1 Q0 b 2\n")
    with pytest.raises(InputError, match=r"bad.trec:2: expected 6 columns"):
        read_trec(tmp_path / "bad.trec")
