"""Readers for the four formats, the paper's text options, bad input, and training batches."""
import json

import pytest
import torch

from HybridPQA.data import build_split, find_split
from HybridPQA.data.prepare import is_test_product
from HybridPQA.data.readers import read_split
from HybridPQA.data.text import context_text, flatten_attribute, normalize_text
from HybridPQA.data.training import TrainingSet
from HybridPQA.errors import InputError

ER_HEADER = "qid\tASIN\tqa_pair_id\tquestion\tcandidate\tlabel\tsource\tconfidence\n"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_evidence_ranking_tsv(tmp_path):
    path = write(tmp_path / "dev.csv", ER_HEADER +
                 "1\tA1\t10\tdoes it float?\tit floats well\t1\treview\thigh\n"
                 "1\tA1\t11\tdoes it float?\t\"size:  { value:\"\"small\"\" }\"\t0\tattribute\thigh\n"
                 "2\tA2\t12\t \tempty question\t0\tCQA\thigh\n"
                 "3\tA2\t13\tis it red?\tit is blue\t0\tCQA\tmid\n")
    data = read_split(path)
    assert data.mode == "rerank" and data.candidates == {"1": ["10", "11"], "3": ["13"]}
    assert data.docs["11"] == 'size:  { value:"small" }' and data.doc_source["10"] == "review"
    assert data.judged_qids() == ["1"]  # question 3 has no positive
    assert len(data.issues) == 1 and f"{path}:4: empty question" in data.issues[0]


def test_missing_column_names_file_and_line(tmp_path):
    path = write(tmp_path / "dev.csv", "qid\tASIN\tquestion\tcandidate\tlabel\n1\tA\tq\tc\t1\n")
    with pytest.raises(InputError, match=r"dev.csv:1: missing column\(s\) qa_pair_id, source"):
        read_split(path)


def test_answer_generation_tsv_uses_same_product_evidence(tmp_path):
    path = write(tmp_path / "train.csv", "ASIN\tquestion\tcandidate\tanswer\tsource\n"
                 "A1\tdoes it float?\tit floats\tyes\treview\n"
                 "A1\tis it red?\tit is red\tyes\tbullet\n"
                 "A2\tbattery?\ttwo aa\ttwo\tattribute\n")
    data = read_split(path)
    assert len(data.queries) == 3 and data.candidates["q2"] == ["d2", "d3"]
    assert data.positives("q2") == ["d2"]


def test_original_json_and_bad_records(tmp_path):
    records = [{"qid": 7, "question": "q?", "positive_ctxs": [{"cid": "a", "source": "CQA", "text": "yes"}],
                "negative_ctxs": [{"cid": "b", "text": "no"}, {"cid": "c"}]},
               {"qid": 8, "question": ""}]
    data = read_split(write(tmp_path / "test.json", json.dumps(records)))
    assert data.candidates == {"7": ["a", "b"]} and data.qrels["7"] == {"a": 1, "b": 0}
    assert len(data.issues) == 2 and "record 1" in data.issues[1]
    with pytest.raises(InputError, match=r"bad.json:1: invalid JSON"):
        read_split(write(tmp_path / "bad.json", "[{"))


def test_beir_folder_reports_bad_lines(tmp_path):
    write(tmp_path / "corpus.jsonl", '{"_id": "d1", "title": "T", "text": "x"}\n{broken\n{"_id": "d2", "text": "y"}\n')
    write(tmp_path / "queries.jsonl", '{"_id": "q1", "text": "what?"}\n')
    qrels = write(tmp_path / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td9\t1\n")
    data = read_split(qrels)
    assert data.mode == "retrieve" and data.docs == {"d1": "T x", "d2": "y"} and data.qrels == {"q1": {"d1": 1}}
    assert any("corpus.jsonl:2: malformed JSON line" in i for i in data.issues)
    assert any("test.tsv:3: document d9 is not in corpus.jsonl" in i for i in data.issues)
    assert find_split(tmp_path, "test") == qrels
    with pytest.raises(InputError, match="no split 'dev'"):
        find_split(tmp_path, "dev")


def test_text_options():
    attr = "item_weight:  { unit:pounds, normalized_value:{ unit:pounds, value:13. }, value:13. }"
    assert flatten_attribute(attr) == "item weight : 13. pounds"
    assert flatten_attribute('size:  { value:"ipad case" }') == "size : ipad case"
    assert flatten_attribute("not { parsable") == "not { parsable"
    assert normalize_text('5" wide, 3x4 and 2 lbs \u2014 ok') == "5 inches wide, length 3 x width 4 and 2 pound - ok"
    assert normalize_text("2 cars", numbers=True) == "number cars"
    text = context_text(attr, "attribute", insert_source=True, normalize=True, normalize_numbers=False,
                        flatten_attributes=True)
    assert text == "attribute item weight : 13.0 pounds"  # normalisation mends the trailing dot


def test_training_batches_are_deterministic_and_mark_positives(product_qa):
    from HybridPQA.config import load_config

    data = build_split(product_qa / "train.json", load_config(None, dotenv_path=None).RETRIEVER.DATA)
    a = TrainingSet(data, batch_size=4, num_positives=1, num_total=5, seed=3)
    b = TrainingSet(data, batch_size=4, num_positives=1, num_total=5, seed=3)
    first, again = a.batch(2, 5), b.batch(2, 5)
    assert first.contexts == again.contexts and len(first.contexts) == 20
    own = torch.zeros(4, 20, dtype=torch.bool)
    for i in range(4):
        own[i, i * 5] = True
    assert (first.positive & own).sum() == 4  # each question's first own context is a positive
    assert a.batch(3, 5).contexts != first.contexts  # a new epoch samples anew


def test_prepared_product_qa_has_no_leak(product_qa):
    splits = {n: json.loads((product_qa / f"{n}.json").read_text()) for n in ("train", "dev", "test")}
    dev_test_questions = {r["question"].lower().strip() for n in ("dev", "test") for r in splits[n]}
    assert not {r["question"].lower().strip() for r in splits["train"]} & dev_test_questions
    assert all(not is_test_product(r["asin"]) for r in splits["dev"])
    assert all(is_test_product(r["asin"]) for r in splits["test"])
    assert len(splits["dev"]) + len(splits["test"]) == 509


def test_prepared_epqa_keeps_grades_and_splits_by_product(raw_data, tmp_path):
    from HybridPQA.data.prepare import prepare_epqa

    stats = prepare_epqa(raw_data / "epqa", tmp_path)
    assert [stats[s]["questions"] for s in ("train", "dev", "test")] == [578, 202, 197]  # all 977 questions
    splits = {s: read_split(tmp_path / f"{s}.json") for s in ("train", "dev", "test")}
    products = [set(d.query_group.values()) for d in splits.values()]
    assert not (products[0] & products[1] or products[0] & products[2] or products[1] & products[2])
    grades = {g for d in splits.values() for rels in d.qrels.values() for g in rels.values()}
    assert grades == {0, 1, 2}
    batch = TrainingSet(splits["train"], 4, 2, 6, seed=0).batch(0, 0)
    assert set(batch.labels[:, :2].flatten().tolist()) <= {1.0, 2.0} and batch.labels[:, 2:].sum() == 0
