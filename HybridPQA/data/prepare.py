"""Build the product-QA experiment from hetPQA (the evidence-ranking train/test files are not public here).

- train: answer-generation train, minus every question whose text also appears in
  evidence-ranking dev; positives are the question's evidence rows, negatives the other
  evidence of the same product (in-batch negatives are added at training time);
- dev / test: evidence-ranking dev, split by product: an ASIN goes to test when the first
  byte of md5(ASIN) is odd, so the split is deterministic and no product is in both.

Writes <out>/{train,dev,test}.json in the original code's JSON format (plus `asin`) and
<out>/stats.json with the counts that data/README.md documents.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from HybridPQA.data.readers import RankingData, read_answer_generation, read_epqa, read_evidence_ranking


def _norm(question: str) -> str:
    return " ".join(question.lower().split())


def is_test_product(asin: str) -> bool:
    return hashlib.md5(asin.encode()).digest()[0] % 2 == 1


def to_records(data: RankingData) -> list[dict]:
    """RankingData -> [{qid, question, asin, positive_ctxs, negative_ctxs}] (format c)."""
    records = []
    for qid, question in data.queries.items():
        ctx = {1: [], 0: []}
        for docid in data.candidates[qid]:
            label = data.qrels.get(qid, {}).get(docid, 0)
            entry = {"cid": docid, "source": data.doc_source.get(docid), "text": data.docs[docid]}
            ctx[1 if label > 0 else 0].append({**entry, "label": label} if label > 1 else entry)
        records.append({"qid": qid, "question": question, "asin": data.query_group.get(qid),
                        "positive_ctxs": ctx[1], "negative_ctxs": ctx[0]})
    return records


def _stats(records: list[dict]) -> dict:
    sources: dict[str, int] = {}
    for rec in records:
        for ctx in rec["positive_ctxs"]:
            sources[ctx["source"]] = sources.get(ctx["source"], 0) + 1
    return {
        "questions": len(records),
        "questions_with_positive": sum(1 for r in records if r["positive_ctxs"]),
        "products": len({r["asin"] for r in records}),
        "candidates": sum(len(r["positive_ctxs"]) + len(r["negative_ctxs"]) for r in records),
        "positives": sum(len(r["positive_ctxs"]) for r in records),
        "positives_by_source": dict(sorted(sources.items())),
    }


def epqa_split(asin: str) -> str:
    """ePQA dev split by product: md5(ASIN)'s first byte mod 5 -> 0-2 train, 3 dev, 4 test (60/20/20)."""
    return ("train", "train", "train", "dev", "test")[hashlib.md5(asin.encode()).digest()[0] % 5]


def prepare_epqa(raw: Path, out: Path) -> dict:
    """ePQA (graded 0/1/2, the cleaned successor of hetPQA; only its dev file is public here) split by
    product into <out>/{train,dev,test}.json (a positive's grade in its `label`) and stats.json."""
    records = to_records(read_epqa(raw / "dev.csv"))
    splits = {name: [r for r in records if epqa_split(r["asin"]) == name] for name in ("train", "dev", "test")}
    out.mkdir(parents=True, exist_ok=True)
    stats = {name: {**_stats(part), "fully_answering": sum(c.get("label", 1) == 2 for r in part
                                                           for c in r["positive_ctxs"])}
             for name, part in splits.items()}
    for name, part in splits.items():
        (out / f"{name}.json").write_text(json.dumps(part, indent=1, ensure_ascii=False))
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def prepare_product_qa(raw: Path, out: Path) -> dict:
    """Write the three splits and return their statistics."""
    ranking = read_evidence_ranking(raw / "evidence_ranking" / "dev.csv")
    generation = read_answer_generation(raw / "answer_generation" / "train.csv")
    held_out = {_norm(q) for q in ranking.queries.values()}
    train = [r for r in to_records(generation) if _norm(r["question"]) not in held_out]
    for rec in train:  # the same evidence can back two questions: never use it as a negative
        positives = {c["text"] for c in rec["positive_ctxs"]}
        rec["negative_ctxs"] = [c for c in rec["negative_ctxs"] if c["text"] not in positives]
    evaluation = to_records(ranking)
    splits = {
        "train": train,
        "dev": [r for r in evaluation if not is_test_product(r["asin"])],
        "test": [r for r in evaluation if is_test_product(r["asin"])],
    }
    out.mkdir(parents=True, exist_ok=True)
    stats = {name: _stats(records) for name, records in splits.items()}
    stats["train"]["removed_overlapping_questions"] = len(generation.queries) - len(train)
    stats["train"]["with_same_product_negatives"] = sum(1 for r in train if r["negative_ctxs"])
    stats["input_issues"] = ranking.issues + generation.issues
    for name, records in splits.items():
        (out / f"{name}.json").write_text(json.dumps(records, indent=1, ensure_ascii=False))
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
