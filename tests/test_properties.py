"""Property-based tests (hypothesis): malformed configs and data files end in a one-line
InputError or a correct result, never a deep traceback."""
import json
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from HybridPQA.config import all_keys, get_cfg_defaults, load_config
from HybridPQA.data import build_split
from HybridPQA.data.readers import ER_COLUMNS, RankingData, read_split
from HybridPQA.errors import InputError

KEYS = all_keys(get_cfg_defaults())
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12)
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=5), scalars, max_size=2)
words = st.text(alphabet=string.ascii_letters + string.digits + " \t\"'{}[],:-_\n\\é€", max_size=20)


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
