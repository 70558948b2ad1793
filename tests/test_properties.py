"""Property-based tests (hypothesis): malformed configs and data files end in a one-line
InputError or a correct result, never a deep traceback."""
import json
import os
import string
import subprocess
import sys
from pathlib import Path

import pytest

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from HybridPQA.config import all_keys, get_cfg_defaults, load_config
from HybridPQA.data import build_split
from HybridPQA.data.readers import ER_COLUMNS, RankingData, read_split
from HybridPQA.errors import InputError

KEYS = all_keys(get_cfg_defaults())
EXAMPLES = int(os.environ.get("HPQA_PROPERTY_EXAMPLES", "60"))  # the slow tier reruns this file with more
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12)
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=5), scalars, max_size=2)
words = st.text(alphabet=string.ascii_letters + string.digits + " \t\"'{}[],:-_\n\\é€", max_size=20)
# ids as data files hold them: duplicates, separators TREC cannot hold, empty, path-like
ids = st.sampled_from(["d1", "d1", "d2", "q1", "q1", "d 2", "d\t3", "", "d\u2028", "../x", "a/b", "é"])


def outcome(call):
    """The result, or the InputError; anything else fails the test. Errors must be one line."""
    try:
        return call()
    except InputError as err:
        assert "\n" not in str(err).strip() and str(err), str(err)
        return err


def nested(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {}) if isinstance(node.get(name, {}), dict) else {}
        node[leaf] = value
    return out


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=15), values, max_size=4))
def test_any_experiment_yaml_loads_or_names_the_problem(tmp_path, flat):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(nested(flat)))
    cfg = outcome(lambda: load_config(path, dotenv_path=None))
    if not isinstance(cfg, InputError):
        for key, value in flat.items():  # what was accepted was applied
            if key in KEYS and isinstance(value, (bool, str)) and not isinstance(value, (int, float)):
                node = cfg
                for part in key.split("."):
                    node = node[part]
                assert node == value or str(node) == str(value) or value in ("None", "", "True", "False")


@SETTINGS
@given(st.text(max_size=80))
def test_any_yaml_text_loads_or_names_the_problem(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    outcome(lambda: load_config(path, dotenv_path=None))


@SETTINGS
@given(st.lists(st.sampled_from(KEYS) | st.text(max_size=10) | words, max_size=5))
def test_any_command_line_overrides_load_or_name_the_problem(overrides):
    outcome(lambda: load_config(None, overrides, dotenv_path=None))


def check_data(data) -> None:
    """What a reader returns is consistent: every judged or candidate document exists, no empty text."""
    if isinstance(data, InputError):
        return
    assert isinstance(data, RankingData)
    assert all(isinstance(t, str) and t.strip() for t in data.queries.values())
    assert all(isinstance(t, str) and t.strip() for t in data.docs.values())
    for qid, docs in data.qrels.items():
        assert qid in data.queries and set(docs) <= set(data.docs)
    for qid, docs in (data.candidates or {}).items():
        assert set(docs) <= set(data.docs)


json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["qid", "question", "positive_ctxs", "negative_ctxs", "cid", "text", "source", "asin", "x"]),
    inner, max_size=4), max_leaves=12)


@SETTINGS
@given(json_values)
def test_any_json_records_read_or_name_the_problem(tmp_path, records):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records))
    data = outcome(lambda: read_split(path))
    check_data(data)
    if not isinstance(data, InputError):
        cfg = load_config(None, [], dotenv_path=None).RETRIEVER.DATA
        check_data(outcome(lambda: build_split(path, cfg)))


@SETTINGS
@given(st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
def test_any_bytes_in_a_json_or_csv_file(tmp_path, raw):
    for name in ("dev.json", "dev.csv"):
        (tmp_path / name).write_bytes(raw)
        check_data(outcome(lambda: read_split(tmp_path / name)))


@SETTINGS
@given(st.lists(st.lists(words, min_size=0, max_size=9), max_size=5), st.booleans())
def test_any_hetpqa_rows_read_or_name_the_problem(tmp_path, rows, header):
    lines = (["\t".join(ER_COLUMNS + ("confidence",))] if header else []) + ["\t".join(r) for r in rows]
    path = tmp_path / "test.csv"
    path.write_text("\n".join(lines) + "\n")
    check_data(outcome(lambda: read_split(path)))


@SETTINGS
@given(st.lists(json_values, max_size=4), st.lists(json_values, max_size=3),
       st.lists(st.lists(words | st.integers(-2, 3).map(str), max_size=4), max_size=5))
def test_any_beir_folder_reads_or_names_the_problem(tmp_path, corpus, queries, qrels):
    (tmp_path / "qrels").mkdir(exist_ok=True)
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus) + "\n")
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("\n".join("\t".join(r) for r in qrels) + "\n")
    check_data(outcome(lambda: read_split(tmp_path / "qrels" / "test.tsv")))


def test_the_properties_can_fail(tmp_path):
    """The checker itself rejects an inconsistent split (a judged document that does not exist)."""
    bad = RankingData("x", {"q": "a question"}, {"d": "text"}, {"q": {"missing": 1}})
    try:
        check_data(bad)
    except AssertionError:
        return
    raise AssertionError("check_data accepted a judgement of a missing document")


@SETTINGS
@given(st.lists(st.tuples(ids, words), max_size=5), st.lists(st.tuples(ids, words), max_size=4),
       st.lists(st.tuples(ids, ids, st.integers(-1, 2)), max_size=6), st.booleans())
def test_any_ids_duplicates_and_boms_in_a_beir_folder(tmp_path, corpus, queries, qrels, bom):
    """Ids with separators are refused with file:line, duplicates keep the first, BOMs are stripped."""
    (tmp_path / "qrels").mkdir(exist_ok=True)
    mark = "\ufeff" if bom else ""
    (tmp_path / "corpus.jsonl").write_text(mark + "".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in corpus))
    (tmp_path / "queries.jsonl").write_text(mark + "".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries))
    (tmp_path / "qrels" / "test.tsv").write_text(mark + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels))
    data = outcome(lambda: read_split(tmp_path / "qrels" / "test.tsv"))
    check_data(data)
    if not isinstance(data, InputError):
        first = {}
        for i, t in corpus:
            first.setdefault(i, t)
        assert all(data.docs[d] == first[d].strip() for d in data.docs)  # the first of each id
        assert all(d and not any(c.isspace() for c in d) for d in [*data.docs, *data.queries])
        assert data.judged_qids()


@SETTINGS
@given(st.dictionaries(st.sampled_from(["a.yaml", "b.yaml"]),
                       st.dictionaries(st.sampled_from(["_BASE_", "RETRIEVER.SOLVER.ALPHA", "SOLVER.ALPHA", "NOPE.X",
                                                        "RETRIEVER.MODEL", "EXP", "PRECISION", "BF16"]),
                                       st.sampled_from(["a.yaml", "b.yaml", "c.yaml", 5, None, [1], 0.3, "..", "x",
                                                        "auto", True, {"TOP_K": 3}]), max_size=3), min_size=1))
def test_any_base_chain_and_dotted_keys(tmp_path, files):
    for name, content in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(content))
    cfg = outcome(lambda: load_config(tmp_path / next(iter(files)), dotenv_path=None))
    if not isinstance(cfg, InputError):
        assert 0 <= cfg.RETRIEVER.SOLVER.ALPHA <= 1 and "/" not in cfg.EXP and cfg.EXP not in ("", ".", "..")


run_lines = st.lists(st.tuples(ids, ids, st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5)),
                     max_size=6)


@settings(SETTINGS, max_examples=max(10, EXAMPLES // 3))  # ranx's fusion costs ~0.3 s an example
@given(run_lines, run_lines, st.sampled_from(["linear", "rrf"]), st.sampled_from(["none", "min-max", "z-score"]),
       st.sampled_from(["0.5", "nan", "-1", "2", "0"]), st.sampled_from(["60", "inf", "-1", "0.5", "1e30"]))
def test_any_runs_fuse_or_name_the_problem(tmp_path, a, b, method, norm, alpha, rrf_k):
    """fuse, read to written file: a valid fused run of finite scores, or a one-line error."""
    from HybridPQA.data.trec import read_trec
    from HybridPQA.commands import fuse

    paths = []
    for name, lines in (("a.trec", a), ("b.trec", b)):
        (tmp_path / name).write_text("".join(f"{q or 'x'} Q0 {d or 'y'} 1 {s} t\n" for q, d, s in lines))
        paths.append(str(tmp_path / name))
    out = tmp_path / "fused.trec"
    out.unlink(missing_ok=True)
    argv = [f"--runs={','.join(paths)}", f"--output={out}", f"--method={method}", f"--norm={norm}", f"--alpha={alpha}",
            f"--rrf_k={rrf_k}"]
    result = outcome(lambda: fuse.main(argv))
    if not isinstance(result, InputError):
        fused = read_trec(out)  # finite scores, readable: the project reads back what it wrote
        assert set(fused) <= {line.split()[0] for p in paths for line in Path(p).read_text().splitlines()}
    else:
        assert not out.exists()


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_properties_hold_for_many_more_examples():
    """This file again at 400 examples a property (HPQA_PROPERTY_EXAMPLES), seed 0."""
    env = {**os.environ, "HPQA_PROPERTY_EXAMPLES": "400"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                           "--hypothesis-seed=0", __file__], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]


def _tiny_beir(root: Path, corpus, queries, qrels) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries))
    (root / "qrels" / "test.tsv").write_text("".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels))
    return root


texts = st.sampled_from(["waterproof jacket", "battery life of ten hours", "red", "é€ unicode text", "x"])


@settings(SETTINGS, max_examples=max(10, EXAMPLES // 3))
@given(st.lists(st.tuples(ids, texts), max_size=5), st.lists(st.tuples(ids, texts), max_size=3),
       st.lists(st.tuples(ids, ids, st.integers(-1, 2)), max_size=5), run_lines)
def test_any_split_and_run_mine_or_name_the_problem(tmp_path, corpus, queries, qrels, run):
    """mine, read to written file: the training file it writes reads back, or a one-line error."""
    from HybridPQA.commands.mine import mine

    data = _tiny_beir(tmp_path / "beir", corpus, queries, qrels)
    (tmp_path / "run.trec").write_text("".join(f"{q or 'x'} Q0 {d or 'y'} 1 {s} t\n" for q, d, s in run))
    out = tmp_path / "mined.json"
    out.unlink(missing_ok=True)
    result = outcome(lambda: mine(tmp_path / "run.trec", data, "test", out, depth=3, overwrite=True))
    if not isinstance(result, InputError) and result["questions"]:
        check_data(outcome(lambda: read_split(out)))


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
@settings(SETTINGS, max_examples=8)
@given(st.lists(st.tuples(ids, texts), min_size=1, max_size=5), st.lists(st.tuples(ids, texts), min_size=1, max_size=3),
       st.lists(st.tuples(ids, ids, st.integers(0, 2)), min_size=1, max_size=5))
def test_any_beir_folder_evaluates_exports_and_explains(tmp_path, splade_tiny, corpus, queries, qrels):
    """read -> evaluate -> written files -> export and explain, with the real splade-tiny: the results
    match their run files, the index exports, or one line says what is wrong."""
    import shutil

    from HybridPQA.cli import main
    from HybridPQA.evaluation.evaluator import load_results
    from HybridPQA.modeling.explain import explain_pair
    from HybridPQA.modeling.encode import Encoder
    from HybridPQA.modeling import build_model
    from HybridPQA.retrieval.export import export_pyserini
    from HybridPQA.modeling.encoding import build_encoding
    from HybridPQA.scoring import build_fusion

    shutil.rmtree(tmp_path / "beir", ignore_errors=True)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    data = _tiny_beir(tmp_path / "beir", corpus, queries, qrels)
    argv = ["evaluate", f"--output={tmp_path / 'out'}", f"--data={data}", "--split=test", "--env=none",
            f"--config={Path(__file__).parents[1] / 'configs' / 'zero_shot_scifact.yaml'}",
            "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "RETRIEVER.COMPUTE_FLOPS", "False"]
    try:
        main(argv)
    except SystemExit as stop:
        assert stop.code == 2
        return
    run_dir = tmp_path / "out" / "zero_shot_scifact"
    results = load_results(run_dir / "results" / "test.json")
    assert all(v is None or 0 <= v <= 1 for m in results["metrics"].values() for v in m.values())
    counts = export_pyserini(run_dir / "index" / "test" / "sparse", tmp_path / "exported")
    assert counts["documents"] == results["documents"]
    cfg = load_config(run_dir / "config.yaml", dotenv_path=None)
    model, tokenizer = build_model(cfg)
    e = explain_pair(Encoder(model, tokenizer, build_encoding(cfg), __import__("torch").device("cpu")), queries[0][1],
                     corpus[0][1], build_fusion(cfg))
    # whatever the texts, the matches add up to the sparse score and the parts to the hybrid one
    assert sum(p for *_, p in e.matches) == pytest.approx(e.scores["sparse"], rel=1e-4, abs=1e-6)
    assert e.scores["hybrid"] == pytest.approx(e.scores["dense_part"] + e.scores["sparse_part"], rel=1e-6)
