"""Hostile inputs (issue 13, defects 6-9, 11, 12, 13): duplicates, unwritable ids, empty splits,
byte-order marks, config-loader corners and `fuse` arguments, each a one-line error naming the
file and line (or a documented repair that is reported)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from HybridPQA.cli import main
from HybridPQA.config import load_config
from HybridPQA.data.readers import read_split
from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import finite
from HybridPQA.sweeps.grid import load_sweep

REPO = Path(__file__).resolve().parents[1]
HEADER = "qid\tASIN\tqa_pair_id\tquestion\tcandidate\tlabel\tsource\tconfidence\n"


def beir(root: Path, docs: list[str], queries: list[str], qrels: str) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(d + "\n" for d in docs), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(q + "\n" for q in queries), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root / "qrels" / "test.tsv"


def doc(i, text="a text", _id=None) -> str:
    return json.dumps({"_id": _id if _id is not None else f"d{i}", "title": "", "text": text})


def query(i, text="a question", _id=None) -> str:
    return json.dumps({"_id": _id if _id is not None else f"q{i}", "text": text})


# 6. Duplicates: the first one is kept, every later one is reported with its line ----------------------

def test_duplicate_beir_documents_and_queries_keep_the_first(tmp_path):
    path = beir(tmp_path, [doc(1, "first"), doc(2), doc(1, "second")], [query(1, "first q"), query(1, "second q")],
                "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    data = read_split(path)
    assert data.docs["d1"] == "first" and data.queries["q1"] == "first q"
    assert any("corpus.jsonl:3: _id d1 appeared on an earlier line" in i for i in data.issues)
    assert any("queries.jsonl:2: _id q1 appeared on an earlier line" in i for i in data.issues)


def test_duplicate_json_qid_keeps_the_first_record(tmp_path):
    records = [{"qid": "1", "question": "first", "positive_ctxs": [{"cid": "a", "text": "x"}]},
               {"qid": "1", "question": "second", "positive_ctxs": [{"cid": "b", "text": "y"}]}]
    (tmp_path / "s.json").write_text(json.dumps(records))
    data = read_split(tmp_path / "s.json")
    assert data.queries == {"1": "first"} and data.candidates["1"] == ["a"]
    assert any("record 1: qid 1 is used by an earlier record" in i for i in data.issues)


def test_tsv_qid_reused_for_another_question_is_reported(tmp_path):
    rows = ["1\tA\tp1\tfirst?\tgood\t1\treview\t1", "1\tA\tp2\tfirst?\tbad\t0\treview\t1",
            "1\tA\tp3\tanother?\tother\t1\treview\t1"]
    (tmp_path / "s.csv").write_text(HEADER + "\n".join(rows) + "\n")
    data = read_split(tmp_path / "s.csv")
    assert data.queries == {"1": "first?"} and data.candidates["1"] == ["p1", "p2"]
    assert any("s.csv:4: qid 1 already names another question" in i for i in data.issues)


# 7. Ids that TREC files cannot hold are refused at read time, with the line --------------------------

@pytest.mark.parametrize("bad", ["with space", "tab\there", "line\nbreak", "sep\u2028arator", ""])
def test_unwritable_ids_are_refused(tmp_path, bad):
    path = beir(tmp_path, [doc(1), doc(2, _id=bad)], [query(1)], "q1\td1\t1\n")
    with pytest.raises(InputError, match=r"corpus.jsonl:2: _id .* ids must be non-empty with no spaces"):
        read_split(path)
    records = [{"qid": bad, "question": "q", "positive_ctxs": [{"cid": "a", "text": "x"}]}]
    (tmp_path / "s.json").write_text(json.dumps(records))
    with pytest.raises(InputError, match="record 0: qid"):
        read_split(tmp_path / "s.json")
    if "\n" not in bad and "\t" not in bad and "\u2028" not in bad:
        (tmp_path / "s.csv").write_text(HEADER + f"{bad}\tA\tp1\tq?\tgood\t1\treview\t1\n")
        with pytest.raises(InputError, match="s.csv:2: qid"):
            read_split(tmp_path / "s.csv")


# 8. Empty splits are one-line errors; results never hold NaN ----------------------------------------

@pytest.mark.parametrize("case, message", [
    ("empty qrels", "no usable question"),
    ("empty corpus", "no usable document"),
    ("header-only TSV", "no usable question"),
    ("empty JSON list", "no usable question"),
    ("no positive", "none of its 1 questions has a positive judgement"),
])
def test_empty_splits_name_the_file(tmp_path, case, message):
    if case == "empty qrels":
        path = beir(tmp_path, [doc(1)], [query(1)], "")
    elif case == "empty corpus":
        path = beir(tmp_path, [], [query(1)], "q1\td1\t1\n")
    elif case == "header-only TSV":
        path = tmp_path / "s.csv"
        path.write_text(HEADER)
    elif case == "empty JSON list":
        path = tmp_path / "s.json"
        path.write_text("[]")
    else:
        path = beir(tmp_path, [doc(1)], [query(1)], "q1\td1\t0\n")
    with pytest.raises(InputError, match=message) as err:
        read_split(path)
    assert str(tmp_path / "corpus.jsonl" if case == "empty corpus" else path) in str(err.value) and "\n" not in str(err.value)


def test_trec_format_qrels_in_a_beir_folder_read(tmp_path):
    path = beir(tmp_path, [doc(1), doc(2)], [query(1)], "q1 0 d2 1\nq1 0 d1 0\n")
    assert read_split(path).qrels == {"q1": {"d2": 1, "d1": 0}}


def test_results_hold_no_nan():
    text = json.dumps(finite({"metrics": {"hybrid": {"mrr@5": math.nan, "map": 0.5}}, "x": [math.inf]}),
                      allow_nan=False)
    assert json.loads(text) == {"metrics": {"hybrid": {"mrr@5": None, "map": 0.5}}, "x": [None]}


# 13. Byte-order marks are stripped --------------------------------------------------------------------

def test_byte_order_marks_are_stripped(tmp_path):
    bom = "\ufeff"
    path = beir(tmp_path, [doc(1), doc(2)], [query(1)], "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        (tmp_path / name).write_text(bom + (tmp_path / name).read_text(), encoding="utf-8")
    data = read_split(path)
    assert set(data.docs) == {"d1", "d2"} and data.qrels == {"q1": {"d1": 1}} and not data.issues
    (tmp_path / "s.csv").write_text(bom + HEADER + "1\tA\tp1\tq?\tgood\t1\treview\t1\n", encoding="utf-8")
    assert read_split(tmp_path / "s.csv").queries == {"1": "q?"}
    records = [{"qid": "1", "question": "q", "positive_ctxs": [{"cid": "a", "text": "x"}]}]
    (tmp_path / "s.json").write_text(bom + json.dumps(records), encoding="utf-8")
    assert read_split(tmp_path / "s.json").queries == {"1": "q"}


# 9. Config loader corners -----------------------------------------------------------------------------

def test_base_cycles_and_bad_bases(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(InputError, match=r"_BASE_ cycle \(a.yaml -> b.yaml -> a.yaml\)"):
        load_config(tmp_path / "a.yaml", dotenv_path=None)
    (tmp_path / "c.yaml").write_text("_BASE_: [x.yaml]\n")
    with pytest.raises(InputError, match="_BASE_ must be the path of another YAML file"):
        load_config(tmp_path / "c.yaml", dotenv_path=None)


def test_dotted_keys_in_yaml(tmp_path):
    (tmp_path / "ok.yaml").write_text("RETRIEVER.SOLVER.ALPHA: 0.3\nRETRIEVER.MODEL:\n  TOP_K: 7\n")
    cfg = load_config(tmp_path / "ok.yaml", dotenv_path=None)
    assert cfg.RETRIEVER.SOLVER.ALPHA == 0.3 and cfg.RETRIEVER.MODEL.TOP_K == 7
    (tmp_path / "bad.yaml").write_text("NOPE.X: 1\n")
    with pytest.raises(InputError, match="unknown config key NOPE.X"):
        load_config(tmp_path / "bad.yaml", dotenv_path=None)


@pytest.mark.parametrize("overrides, message", [
    (["SOLVER.OPTIMIZER.BETAS", "['a', 'b']"], "BETAS = ('a', 'b') must be two numbers"),
    (["SOLVER.OPTIMIZER.BETAS", "[None, None]"], "BETAS = (None, None) must be two numbers"),
    (["MODEL.MODEL_PATH", "5"], "RETRIEVER.MODEL.MODEL_PATH must be a string path or None"),
    (["MODEL.MODEL_PATH", "{'a': 1}"], "takes a single value"),
    (["DATA.HARD_NEGATIVES_RUN", "{'a': 1}"], "takes a single value"),
])
def test_config_values_that_used_to_pass(overrides, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides, dotenv_path=None)


def test_deep_nesting_is_one_line(tmp_path):
    (tmp_path / "deep.yaml").write_text("A: " + "[" * 6000 + "]" * 6000 + "\n")
    with pytest.raises(InputError, match="deep.yaml"):
        load_config(tmp_path / "deep.yaml", dotenv_path=None)
    (tmp_path / "deep.json").write_text("[" * 6000 + "]" * 6000)
    with pytest.raises(InputError, match="deep.json"):
        read_split(tmp_path / "deep.json")


def test_json_contexts_that_are_not_lists_are_skipped(tmp_path):
    records = [{"qid": "1", "question": "q", "positive_ctxs": 5},
               {"qid": "2", "question": "q", "positive_ctxs": True},
               {"qid": "3", "question": "q", "positive_ctxs": [{"cid": "a", "text": "x"}]}]
    (tmp_path / "s.json").write_text(json.dumps(records))
    data = read_split(tmp_path / "s.json")
    assert list(data.queries) == ["3"] and sum("must be lists" in i for i in data.issues) == 2


# 11. fuse ------------------------------------------------------------------------------------------

@pytest.fixture()
def two_runs(tmp_path) -> tuple[Path, Path, Path]:
    a, b, qrels = tmp_path / "a.trec", tmp_path / "b.trec", tmp_path / "qrels.tsv"
    a.write_text("q1 Q0 d1 1 2.0 a\nq1 Q0 d2 2 1.0 a\n")
    b.write_text("q1 Q0 d2 1 3.0 b\nq1 Q0 d1 2 0.5 b\n")
    qrels.write_text("q1\td1\t1\n")
    return a, b, qrels


@pytest.mark.parametrize("extra, message", [
    (["--method=rrf", "--rrf_k=inf"], "--rrf_k=inf: expected a finite number"),
    (["--method=rrf", "--rrf_k=nan"], "--rrf_k=nan: expected a finite number"),
    (["--method=rrf", "--rrf_k=1e30"], "expected a whole number from 1 to 1000000"),
    (["--method=rrf", "--rrf_k=-1"], "expected a whole number from 1 to 1000000"),
    (["--weights=nan,1"], "--weights=nan: expected a finite number"),
    (["--tune"], "--tune chooses the fusion on relevance judgements; give --qrels"),
    (["--metric=bogus", "--qrels={qrels}"], "--metric: unknown metric 'bogus'"),
])
def test_fuse_arguments(two_runs, tmp_path, capsys, extra, message):
    a, b, qrels = two_runs
    argv = ["fuse", f"--runs={a},{b}", f"--output={tmp_path / 'out.trec'}"] + [e.format(qrels=qrels) for e in extra]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.trec").exists()


@pytest.mark.parametrize("content, message", [
    (b"q1 Q0 d1 1 nan a\n", "a.trec:1: score 'nan' is not a finite number"),
    (b"q1 Q0 d1 1 \xff\xfe a\n", "a.trec: not UTF-8 text"),
])
def test_fuse_refuses_bad_run_files(two_runs, tmp_path, capsys, content, message):
    a, b, _ = two_runs
    a.write_bytes(content)
    with pytest.raises(SystemExit):
        main(["fuse", f"--runs={a},{b}", f"--output={tmp_path / 'out.trec'}"])
    assert message in capsys.readouterr().err


# 12. A sweep's metrics are checked when it is read --------------------------------------------------

def test_sweep_with_an_unknown_metric_fails_before_any_point(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"BASE: {REPO / 'configs' / 'quickstart.yaml'}\nDATA: data\nGRID: {{SOLVER.ALPHA: [0.2, 0.5]}}\n"
                     "METRICS: [bogus@5]\n")
    with pytest.raises(InputError, match=r"METRICS = \['bogus@5'\]; each must be one of"):
        load_sweep(sweep, tmp_path / "out")


# Strict types and settings that cannot apply (the databases, serve and exports read the same) ---------

@pytest.mark.parametrize("record,needle", [
    ({"_id": "d9", "title": "", "text": 12345}, "text"),
    ({"_id": "d9", "title": ["a", "list"], "text": "x"}, "title"),
    ({"_id": 7, "title": "", "text": "a text"}, "_id"),
])
def test_a_corpus_field_that_is_not_text_is_refused(tmp_path, record, needle):
    from HybridPQA.data.corpus import read_texts

    path = tmp_path / "corpus.jsonl"
    path.write_text(doc(1) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=f"corpus.jsonl:2: .*{needle}"):
        read_texts(path)


def test_a_task_head_model_is_refused(splade_tiny, tmp_path):
    import shutil

    from HybridPQA.modeling.pretrained import model_kind

    clf = tmp_path / "clf"
    shutil.copytree(splade_tiny, clf)
    config = clf / "config.json"
    config.write_text(config.read_text().replace("BertForMaskedLM", "BertForSequenceClassification"))
    with pytest.raises(InputError, match="a BertForSequenceClassification .a task head.*cross"):
        model_kind(clf)


@pytest.mark.parametrize("overrides,needle", [
    (["RETRIEVER.MODEL.BIENCODER_TYPE", "dense", "RETRIEVER.MODEL.MLM_WARMUP.STEPS", "5"], "this dense model has none"),
    (["RETRIEVER.INDEX.ENGINE", "qdrant", "RETRIEVER.INDEX.URI", ":memory:"], "is not a server's URL"),
    (["RETRIEVER.INDEX.ENGINE", "qdrant", "RETRIEVER.INDEX.URI", "some/folder"], "is not a server's URL"),
    (["RETRIEVER.INDEX.URI", "http://127.0.0.1:6333"], "with STORE 'memory'"),
    (["RETRIEVER.INDEX.COLLECTION", "mine"], "with STORE 'memory'"),
    (["RETRIEVER.INDEX.ENGINE", "qdrant", "RETRIEVER.INDEX.COLLECTION", "a/b"], "COLLECTION"),
    (["RETRIEVER.INDEX.ENGINE", "milvus", "RETRIEVER.INDEX.COLLECTION", "c" * 300], "COLLECTION"),
])
def test_settings_that_cannot_apply_are_refused(overrides, needle):
    with pytest.raises(InputError, match=re.escape(needle)):
        load_config(None, overrides, dotenv_path=None)


def test_flags_that_do_not_apply_and_empty_metrics_are_refused(tmp_path, capsys):
    (tmp_path / "a.trec").write_text("q1 Q0 d1 1 2.0 a\n")
    (tmp_path / "q.tsv").write_text("q1\td1\t1\n")
    (tmp_path / "ix").mkdir()
    for argv, needle in (
            (["evaluate", f"--run={tmp_path / 'a.trec'}", f"--qrels={tmp_path / 'q.tsv'}", "--metrics=,"], "--metrics"),
            (["index", f"--from-index={tmp_path / 'ix'}", f"--output={tmp_path / 'out'}"], "--store"),
            (["index", f"--from-index={tmp_path / 'ix'}", f"--output={tmp_path / 'out'}", "--engine=memory",
              "--uri=http://127.0.0.1:1"], "--store=qdrant or --store=milvus")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and needle in err and "usage:" not in err, err


def test_serve_checks_its_port_before_loading_any_index(tmp_path):
    import socket

    from HybridPQA.commands.serve import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"--port={port}: cannot listen"):  # not "no index.json"
            serve([str(tmp_path / "no-such-index")], port=port)
