"""BM25, the cross-encoder, late interaction, reranking a first-stage run, hard-negative mining."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from HybridPQA.cli import main
from HybridPQA.data import read_split
from HybridPQA.errors import InputError
from HybridPQA.scoring import maxsim
from HybridPQA.modeling.bm25 import BM25, Analyzer

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quickstart.yaml")
ZERO_SCIFACT = str(REPO / "configs" / "zero_shot_scifact.yaml")


def small(model: Path, steps: int = 2) -> list[str]:
    return ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model), "SOLVER.TOTAL_TRAIN_STEPS", str(steps),
            "SOLVER.NUM_STEP_PER_EVAL", "2", "SOLVER.LOG_STEPS", "1", "DATA.COUNT", "24",
            "SOLVER.TRAIN_BATCH_SIZE", "4", "SOLVER.OPTIMIZER.WARMUP_STEPS", "1"]


def test_analyzer_lowercases_stems_drops_stopwords_and_keeps_numbers():
    assert Analyzer()("The Batteries are charging at 110 Volts!") == ["batteri", "charg", "110", "volt"]
    assert Analyzer(stem=False, stopwords=False)("The 2 cats") == ["the", "2", "cats"]


def test_bm25_matches_lucene_formula_with_corpus_statistics():
    docs = ["red apple pie", "green apple", "red car red wheel", "blue sky"]
    bm25 = BM25(k1=0.9, b=0.4, analyzer=Analyzer(stem=False, stopwords=False)).index(docs)
    lengths = [3, 2, 4, 2]
    avg = sum(lengths) / 4

    def term(tf, df, length):  # Lucene 8+: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), no (k1 + 1) factor
        idf = math.log(1 + (4 - df + 0.5) / (df + 0.5))
        return idf * tf / (tf + 0.9 * (1 - 0.4 + 0.4 * length / avg))

    expected = [term(1, 2, 3), 0.0, term(2, 2, 4), 0.0]  # "red" is in two documents
    assert np.allclose(bm25.scores("red"), expected, atol=1e-5)
    assert bm25.scores("the of").tolist() == [0.0] * 4  # nothing to match: zeros, no error
    assert np.argmax(bm25.scores("apple pie")) == 0


@pytest.mark.slow  # trains or evaluates end to end
def test_bm25_row_on_product_qa_and_scifact(tmp_path, product_qa, small_beir):
    """BM25 through `evaluate`: rerank candidates (product QA) and retrieve from a corpus (SciFact)."""
    out = tmp_path / "out"
    results = main(["evaluate", f"--output={out}", f"--data={product_qa}", f"--config={QUICK}",
                    "--env=none", "EXP", "bm25", "MODEL.BIENCODER_TYPE", "bm25"])  # evaluate never trains
    assert 0.5 < results["test"]["metrics"]["bm25"]["mrr@5"] < 0.9
    assert results["test"]["efficiency"]["bm25"]["latency_ms_p50"] > 0
    results = main(["evaluate", f"--output={out}", f"--data={small_beir}", f"--config={ZERO_SCIFACT}",
                    "--split=test", "--env=none", "EXP", "bm25_scifact", "MODEL.BIENCODER_TYPE", "bm25",
                    "DO_TRAIN", "False"])
    run = (out / "bm25_scifact" / "runs" / "test.bm25.trec").read_text().splitlines()
    assert len(run) == 40 * 100 and results["test"]["metrics"]["bm25"]["ndcg@10"] > 0.5


def test_maxsim_ignores_padding_and_matches_a_loop():
    torch.manual_seed(0)
    q, d = torch.randn(2, 3, 4), torch.randn(5, 6, 4)
    q[1, 2:] = 0  # padding
    d[:, 4:] = 0
    expected = torch.zeros(2, 5)
    for i in range(2):
        for j in range(5):
            tokens = [t for t in range(3) if q[i, t].abs().sum() > 0]
            expected[i, j] = sum(max(float(q[i, t] @ d[j, k]) for k in range(4)) for t in tokens)
    assert torch.allclose(maxsim(q, d), expected, atol=1e-5)


@pytest.mark.parametrize("kind, overrides", [
    ("cross", ["MODEL.BIENCODER_TYPE", "cross"]),
    ("late", ["MODEL.BIENCODER_TYPE", "dense", "MODEL.CROSS_INTERACTION", "True", "SOLVER.LEVEL", "seq",
              "MODEL.PROJECTION_DIM", "32"]),
])
@pytest.mark.slow  # trains or evaluates end to end
def test_cross_encoder_and_late_interaction_train_and_reload(tmp_path, splade_tiny, product_qa, kind, overrides):
    results = main(["train", f"--output={tmp_path}", f"--data={product_qa}", f"--config={QUICK}",
                    "--env=none", *small(splade_tiny), "EXP", kind, *overrides])
    run = tmp_path / kind
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert f"contrastive_{kind}" in lines[0] and math.isfinite(lines[0]["loss"])
    test = results["test"]
    assert set(test["metrics"]) == {kind} and 0 < test["metrics"][kind]["mrr@5"] <= 1
    assert test["efficiency"][kind]["gflops_per_pair"] > 0
    best = run / "checkpoints" / json.loads((run / "checkpoints" / "best.json").read_text())[0]["path"]
    again = main(["evaluate", f"--output={tmp_path / 'again'}", f"--data={product_qa}",
                  f"--checkpoint={best}", "--split=test", "--env=none"])
    assert again["test"]["metrics"][kind]["mrr@5"] == pytest.approx(test["metrics"][kind]["mrr@5"], abs=1e-6)


@pytest.mark.slow  # trains or evaluates end to end
def test_late_interaction_reranks_a_first_stage_run(tmp_path, splade_tiny, small_beir):
    out = tmp_path / "out"
    main(["evaluate", f"--output={out}", f"--data={small_beir}", f"--config={ZERO_SCIFACT}",
          "--split=test", "--env=none", "EXP", "bm25", "MODEL.BIENCODER_TYPE", "bm25", "DO_TRAIN", "False"])
    late = ["EXP", "late", "MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "MODEL.BIENCODER_TYPE", "dense",
            "MODEL.CROSS_INTERACTION", "True", "SOLVER.LEVEL", "seq"]
    with pytest.raises(SystemExit):  # a corpus split without a first stage: a clear error
        main(["evaluate", f"--output={out}", f"--data={small_beir}", f"--config={ZERO_SCIFACT}",
              "--split=test", "--env=none", *late])
    results = main(["evaluate", f"--output={out}", f"--data={small_beir}", f"--config={ZERO_SCIFACT}",
                    "--split=test", "--env=none", "--overwrite", *late,
                    "RERANK.RUN", str(out / "bm25" / "runs" / "{split}.bm25.trec"), "RERANK.DEPTH", "20"])
    test = results["test"]
    assert test["mode"] == "rerank" and test["first_stage"].endswith("test.bm25.trec")
    assert "recall@100" in test["metrics"]["late"]  # still scored as retrieval
    run = [line.split() for line in (out / "late" / "runs" / "test.late.trec").read_text().splitlines()]
    assert max(int(r[3]) for r in run) == 20


def test_mine_writes_a_training_file_without_positives(tmp_path, product_qa):
    out = tmp_path / "out"
    main(["evaluate", f"--output={out}", f"--data={product_qa}", f"--config={QUICK}", "--split=dev",
          "--env=none", "EXP", "bm25", "MODEL.BIENCODER_TYPE", "bm25"])  # no DO_TRAIN False: evaluate never trains
    target = tmp_path / "mined.json"
    args = ["mine", f"--run={out / 'bm25' / 'runs' / 'dev.bm25.trec'}", f"--data={product_qa}", "--split=dev",
            f"--output={target}", "--depth=3"]
    counts = main(args)
    mined = read_split(target)
    source = read_split(product_qa / "dev.json")
    assert counts["questions"] == len(mined.judged_qids()) > 100 and counts["negatives_per_question"] <= 3
    for qid in mined.judged_qids():
        negatives = [d for d in mined.candidates[qid] if mined.qrels[qid].get(d, 0) <= 0]
        assert not set(negatives) & set(source.positives(qid)) and len(negatives) <= 3
    with pytest.raises(SystemExit):  # never overwritten silently
        main(args)


def test_missing_teacher_or_first_stage_run_is_a_clear_error(tmp_path, splade_tiny, product_qa):
    with pytest.raises(InputError, match="TEACHER_RUN = .nothing.trec.: no such file"):  # before the model loads
        from HybridPQA.config import load_config
        from HybridPQA.pipeline import train_and_test

        cfg = load_config(QUICK, [*small(splade_tiny), "DISTILL.TEACHER_RUN", "nothing.trec"], dotenv_path=None)
        train_and_test(cfg, tmp_path, product_qa)


@pytest.mark.slow  # trains or evaluates end to end
def test_distillation_from_a_teacher_run_and_self_distillation(tmp_path, splade_tiny, product_qa):
    out = tmp_path / "out"
    main(["evaluate", f"--output={out}", f"--data={product_qa}", f"--config={QUICK}", "--split=train",
          "--env=none", "EXP", "teacher", "MODEL.BIENCODER_TYPE", "bm25", "DO_TRAIN", "False", "DATA.COUNT", "24"])
    main(["train", f"--output={out}", f"--data={product_qa}", f"--config={QUICK}", "--env=none",
          *small(splade_tiny, steps=3), "EXP", "student", "DISTILL.LOSS", "kl",
          "DISTILL.TEACHER_RUN", str(out / "teacher" / "runs" / "train.bm25.trec"),
          "DISTILL.SELF_WEIGHT", "1.0", "DISTILL.SELF_START_STEP", "1"])
    lines = [json.loads(line) for line in (out / "student" / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "split" not in line]
    assert all(math.isfinite(s[f"distill_{h}"]) and s[f"distill_{h}"] > 0 for s in steps for h in ("dense", "sparse"))
    assert "self_distill_dense" not in steps[0] and "self_distill_dense" in steps[1]  # from SELF_START_STEP on


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_reproduce_runs_reuses_and_reports_a_small_table(tmp_path, splade_tiny, product_qa, capsys):
    from HybridPQA.paper import reproduce

    table = tmp_path / "paper" / "mini"
    table.mkdir(parents=True)
    (table / "table.yaml").write_text(
        "TITLE: 'mini'\nMETRICS: ['mrr@5', 'map']\nROWS: ['bm25', 'hybrid']\nREFERENCE: 'hybrid'\n"
        "CLAIMS:\n  - {ROW: 'hybrid', OVER: 'bm25', METRIC: 'mrr@5', KIND: 'better'}\n")
    common = (f"  MODEL:\n    PRETRAINED_MODEL_TYPE: '{splade_tiny}'\n    BIENCODER_TYPE: '{{kind}}'\n"
              "  DATA:\n    COUNT: 24\n  SOLVER:\n    TRAIN_BATCH_SIZE: 4\n")
    for name, kind, scorer, extra in (("bm25", "bm25", "bm25", "  DO_TRAIN: False\n"),
                                      ("hybrid", "hybrid", "hybrid", "")):
        (table / f"{name}.yaml").write_text(
            f"_BASE_: {QUICK}\nEXP: '{name}'\nRETRIEVER:\n{extra}{common.format(kind=kind)}"
            f"PAPER:\n  ROW: '{name.upper()}'\n  SCORER: '{scorer}'\n  DATA: '{product_qa}'\n"
            "  EXPECT: {mrr@5: [0.5, 0.5]}\n")
    output = tmp_path / "out"
    assert reproduce("mini", output, steps=2, dry_run=True, root=tmp_path / "paper") == {}
    assert "would run" in capsys.readouterr().out and not (output / "mini-steps2" / "hybrid").exists()
    report = reproduce("mini", output, steps=2, root=tmp_path / "paper")
    folder = output / "mini-steps2"
    for name in ("table.md", "table.csv", "table.tex", "checks.txt", "plots/training_curves.png",
                 "plots/mrr@5_vs_gflops_per_query.png"):
        assert (folder / name).stat().st_size > 0, name
    assert "| HYBRID |" in (folder / "table.md").read_text() and "\\toprule" in (folder / "table.tex").read_text()
    assert set(report["significance"]) == {"bm25"} and 0 <= report["significance"]["bm25"]["map"]["p"] <= 1
    # --steps is a quick look: no row's expectations are checked, no cost is measured
    assert all(c.startswith("SKIP") for c in report["checks"]) and "a quick look" in (folder / "table.md").read_text()
    assert report["values"]["hybrid"]["latency_ms_p50"] is None
    before = (folder / "hybrid" / "results" / "test.json").stat().st_mtime
    reproduce("mini", output, steps=2, root=tmp_path / "paper")
    assert "finished, reused" in capsys.readouterr().out
    assert (folder / "hybrid" / "results" / "test.json").stat().st_mtime == before


def test_claims_and_expectations_give_ok_and_fail_lines():
    from HybridPQA.paper.report import check_claim

    values = {"hybrid": {"mrr@5": 0.80, "gflops_per_pair": 0.02}, "cross": {"mrr@5": 0.83, "gflops_per_pair": 0.03}}
    sig = {"cross": {"mrr@5": {"p": 0.01, "significant": True}}}
    assert check_claim({"ROW": "hybrid", "OVER": "cross", "METRIC": "mrr@5", "KIND": "within", "MARGIN": 0.02},
                       values, sig).startswith("FAIL")
    assert check_claim({"ROW": "hybrid", "OVER": "cross", "METRIC": "gflops_per_pair", "KIND": "cheaper",
                        "MARGIN": 0.3}, values, sig).startswith("OK")
    assert check_claim({"ROW": "cross", "OVER": "hybrid", "METRIC": "mrr@5", "KIND": "better"}, values,
                       {"hybrid": {"mrr@5": {"p": 0.2, "significant": False}}}).startswith("FAIL")


def test_explain_contributions_add_up_to_the_ranked_scores(tmp_path, splade_tiny, product_qa, capsys):
    main(["train", f"--output={tmp_path}", f"--data={product_qa}", f"--config={QUICK}", "--env=none",
          *small(splade_tiny), "EXP", "hybrid", "DO_TEST", "False"])
    best = tmp_path / "hybrid" / "checkpoints" / "last"
    data = read_split(product_qa / "test.json")
    qid = data.judged_qids()[0]
    page = tmp_path / "page.html"
    main(["explain", f"--checkpoint={best}", f"--data={product_qa}", "--split=test", f"--qid={qid}",
          f"--output={page}", "--top=5"])
    text = capsys.readouterr().out
    assert "matching term" in text and "hybrid =" in text and f"question {qid}" in text and "rank 1 of " in text
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<mark" in html and "http" not in html and "<script" not in html
    assert "class=legend" in html and "dense part" in html and "##" not in html  # the document's own words
    from HybridPQA.config import load_config
    from HybridPQA.modeling.explain import explain_pair
    from HybridPQA.modeling import build_model
    from HybridPQA.modeling.encode import Encoder
    from HybridPQA.modeling.encoding import build_encoding
    from HybridPQA.scoring import build_fusion

    cfg = load_config(best / "config.yaml", dotenv_path=None)
    model, tokenizer = build_model(cfg, checkpoint=best)
    e = explain_pair(Encoder(model, tokenizer, build_encoding(cfg), torch.device("cpu")), "battery life in hours",
                     "the battery lasts 10 hours", build_fusion(cfg))
    assert e.matches and sum(p for *_, p in e.matches) == pytest.approx(e.scores["sparse"], rel=1e-5)
    assert e.scores["hybrid"] == pytest.approx(0.5 * e.scores["dense"] + 0.5 * e.scores["sparse"], rel=1e-5)
    assert sum(e.shares().values()) == pytest.approx(1.0)
    with pytest.raises(SystemExit):
        main(["explain", f"--checkpoint={best}", f"--data={product_qa}", "--split=test", "--qid=nope"])


@pytest.mark.parametrize("row, message", [
    ("EXP: 'a'\n", "needs a PAPER section with ROW, SCORER and DATA"),
    ("EXP: 'a'\nPAPER: {ROW: 'A', SCORER: 'sparse', DATA: 'd', EXPECT: {mrr@5: 0.8}}\n", "must be [value, tolerance]"),
    ("EXP: 'a'\nPAPER: {ROW: 'A', SCORER: 'sparse', DATA: 'd', AFTER: ['a']}\n", "PAPER.AFTER makes a cycle: a -> a"),
    ("EXP: 'a'\nPAPER: {ROW: 'A', SCORER: 'sparse', DATA: 'd', NOTES: 'x'}\n", "unknown PAPER key(s) NOTES"),
    ("EXP: 'a'\nRETRIEVER: {ALHPA: 1}\nPAPER: {ROW: 'A', SCORER: 'sparse', DATA: 'd'}\n", "unknown config key"),
])
def test_bad_paper_rows_give_one_line_errors(tmp_path, row, message):
    from HybridPQA.paper.rows import load_table

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "table.yaml").write_text("METRICS: ['mrr@5']\nREFERENCE: 'a'\n")
    (tmp_path / "t" / "a.yaml").write_text(row)
    with pytest.raises(InputError) as err:
        load_table("t", tmp_path / "out", root=tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_output_placeholder_becomes_an_absolute_path(tmp_path, monkeypatch):
    from HybridPQA.paper.rows import load_table

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "table.yaml").write_text("METRICS: ['mrr@5']\nREFERENCE: 'a'\n")
    (tmp_path / "t" / "a.yaml").write_text("EXP: 'a'\nRETRIEVER: {DISTILL: {TEACHER_RUN: '{output}/t/runs/x.trec'}}\n"
                                           "PAPER: {ROW: 'A', SCORER: 'sparse', DATA: 'd'}\n")
    monkeypatch.chdir(tmp_path)
    _, (row,) = load_table("t", Path("out"), root=tmp_path)
    assert row.cfg.RETRIEVER.DISTILL.TEACHER_RUN == str(tmp_path / "out" / "t" / "runs" / "x.trec")


@pytest.mark.slow  # runs three BM25 rows as `hybridpqa train` processes
def test_reproduce_rows_runs_a_row_and_its_pair_and_reuses_the_rest(tmp_path, product_qa, capsys):
    """--rows runs the named rows and their PAIRS partners; other rows come from earlier runs in the
    output folder or show as "not run"; an unknown row is a one-line error."""
    from HybridPQA.paper import reproduce

    table = tmp_path / "paper" / "mini"
    table.mkdir(parents=True)
    (table / "table.yaml").write_text(
        "TITLE: 'mini'\nMETRICS: ['mrr@5', 'map']\nROWS: ['plain', 'soft', 'short']\nREFERENCE: 'plain'\n"
        "PAIRS: [['soft', 'plain']]\n")
    for name, b in (("plain", 0.4), ("soft", 0.75), ("short", 0.1)):
        (table / f"{name}.yaml").write_text(
            f"_BASE_: {QUICK}\nEXP: '{name}'\nRETRIEVER:\n  DO_TRAIN: False\n  MODEL:\n    BIENCODER_TYPE: 'bm25'\n"
            f"  BM25:\n    B: {b}\nPAPER:\n  ROW: '{name.upper()}'\n  SCORER: 'bm25'\n  DATA: '{product_qa}'\n"
            "  EXPECT: {mrr@5: [0.7, 0.2]}\n")
    output, root = tmp_path / "out", tmp_path / "paper"
    report = reproduce("mini", output, root=root, rows=["soft"])
    assert report["run"] == ["plain", "soft"] and not (output / "mini" / "short").exists()
    assert "| SHORT | not run |" in (output / "mini" / "table.md").read_text()
    assert report["checks"][:3] == [report["checks"][0], report["checks"][1], "SKIP short: not run (--rows)"]
    assert report["checks"][0].startswith("OK plain") and any(c.startswith("PAIR soft vs plain") for c in report["checks"])
    before = (output / "mini" / "soft" / "results" / "test.json").stat().st_mtime
    report = reproduce("mini", output, root=root, rows=["short"])  # the others from the first run, not rerun
    assert report["run"] == ["short"] and all(report["values"][n]["mrr@5"] > 0.5 for n in ("plain", "soft", "short"))
    assert (output / "mini" / "soft" / "results" / "test.json").stat().st_mtime == before
    assert set(report["significance"]) == {"soft", "short", "soft vs plain"}
    with pytest.raises(InputError, match="--rows: nope is not a row of .*; its rows: plain, soft, short"):
        reproduce("mini", output, root=root, rows=["nope"])


def test_a_paper_row_given_to_train_names_reproduce_rows(tmp_path, product_qa, capsys):
    with pytest.raises(SystemExit):
        main(["train", f"--output={tmp_path}", f"--data={product_qa}",
              f"--config={REPO / 'configs' / 'paper' / 'product-qa' / 'minilm_lexical.yaml'}"])
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "reproduce --table=product-qa --rows=minilm_lexical" in err
    with pytest.raises(SystemExit):
        main(["reproduce", "--table=product-qa", f"--output={tmp_path}", "--rows=minilm_lexical,nope", "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--rows: nope is not a row of configs/paper/product-qa" in err
