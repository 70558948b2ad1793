"""The product-QA formats of the original work, each read into one `RankingData`:
(a) hetPQA evidence-ranking TSV: qid, ASIN, qa_pair_id, question, candidate, label, source, confidence
(b) hetPQA answer-generation TSV: ASIN, question, candidate, answer, source (every row a positive)
(c) the original code's JSON: [{qid, question, positive_ctxs: [{cid, source, text}], negative_ctxs}]
(data.readers: the rules every format keeps.)
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from HybridPQA.data.ranking import RankingData, check_id
from HybridPQA.errors import InputError

ER_COLUMNS = ("qid", "ASIN", "qa_pair_id", "question", "candidate", "label", "source")
AG_COLUMNS = ("ASIN", "question", "candidate", "answer", "source")
csv.field_size_limit(1 << 30)


def _tsv_rows(path: Path, required: tuple[str, ...]):
    """(line number, row) pairs of a tab-separated file, after checking its header."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}:1: missing column(s) {', '.join(missing)}; "
                             f"expected a tab-separated header with {', '.join(required)}")
        for row in reader:
            yield reader.line_num, row


def _add_doc(data: RankingData, docid: str, text: str, source: str | None, where: str) -> str:
    """Register a document; a reused id with another text is renamed (and reported), never merged."""
    if docid in data.docs and data.docs[docid] != text:
        new = f"{docid}.{len(data.docs)}"
        data.issues.append(f"{where}: id {docid} already names another text; renamed to {new}")
        docid = new
    data.docs[docid] = text
    if source:
        data.doc_source[docid] = source
    return docid


def read_evidence_ranking(path: Path) -> RankingData:
    """(a) One row per (question, candidate); label 1 = the candidate is evidence."""
    data = RankingData(path.stem, candidates={})
    for line, row in _tsv_rows(path, ER_COLUMNS):
        where = f"{path}:{line}"
        qid, question = row["qid"], (row["question"] or "").strip()
        if not question or not (row["candidate"] or "").strip():
            data.issues.append(f"{where}: empty question or candidate; row skipped")
            continue
        if row["label"] not in ("0", "1"):
            data.issues.append(f"{where}: label {row['label']!r} is not 0 or 1; row skipped")
            continue
        check_id(qid, where, "qid")
        check_id(row["qa_pair_id"] or "", where, "qa_pair_id")
        if data.queries.get(qid, question) != question:
            data.issues.append(f"{where}: qid {qid} already names another question; row skipped (first one kept)")
            continue
        data.queries.setdefault(qid, question)
        data.query_group[qid] = row["ASIN"]
        docid = _add_doc(data, row["qa_pair_id"], row["candidate"], row["source"], where)
        data.candidates.setdefault(qid, []).append(docid)
        data.qrels.setdefault(qid, {})[docid] = int(row["label"])
    return data


EPQA_COLUMNS = ("qid", "question", "ASIN", "candidate", "source", "qa_pair_id", "label")


def read_epqa(path: Path) -> RankingData:
    """ePQA's comma-separated rows (question, candidate) with graded labels 0 / 1 / 2 (2 = answers it)."""
    data = RankingData(path.stem, candidates={})
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in EPQA_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}:1: missing column(s) {', '.join(missing)}; expected ePQA's header "
                             f"{','.join(EPQA_COLUMNS)}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            qid, question = row["qid"], (row["question"] or "").strip()
            if not question or not (row["candidate"] or "").strip() or row["label"] not in ("0", "1", "2"):
                data.issues.append(f"{where}: empty question or candidate, or a label not 0/1/2; row skipped")
                continue
            data.queries.setdefault(check_id(qid, where, "qid"), question)
            data.query_group[qid] = row["ASIN"]
            docid = _add_doc(data, check_id(row["qa_pair_id"], where, "qa_pair_id"), row["candidate"].strip(),
                             row["source"], where)
            data.candidates.setdefault(qid, []).append(docid)
            data.qrels.setdefault(qid, {})[docid] = int(row["label"])
    return data


def read_answer_generation(path: Path) -> RankingData:
    """(b) Every row is a (question, evidence) positive; the candidates of a question are all
    evidence rows of its product (ASIN), so the other rows act as same-product negatives."""
    data = RankingData(path.stem, candidates={})
    by_asin: dict[str, list[str]] = {}
    qid_of: dict[tuple[str, str], str] = {}
    for line, row in _tsv_rows(path, AG_COLUMNS):
        where = f"{path}:{line}"
        question = (row["question"] or "").strip()
        if not question or not (row["candidate"] or "").strip():
            data.issues.append(f"{where}: empty question or candidate; row skipped")
            continue
        qid = qid_of.setdefault((row["ASIN"], question), f"q{line}")
        data.queries.setdefault(qid, question)
        data.query_group[qid] = row["ASIN"]
        docid = _add_doc(data, f"d{line}", row["candidate"], row["source"], where)
        by_asin.setdefault(row["ASIN"], []).append(docid)
        data.qrels.setdefault(qid, {})[docid] = 1
    for qid in data.queries:
        data.candidates[qid] = by_asin[data.query_group[qid]]
    return data


def read_hybridpqa_json(path: Path) -> RankingData:
    """(c) The original code's records; `asin` (optional) groups questions by product."""
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); expected a list of question records") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply; expected a list of question records") from None
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a JSON list of {{qid, question, positive_ctxs, negative_ctxs}}")
    data = RankingData(path.stem, candidates={})
    for index, rec in enumerate(records):
        where = f"{path}: record {index}"
        if not isinstance(rec, dict) or not str(rec.get("question") or "").strip() or "qid" not in rec:
            data.issues.append(f"{where}: missing qid or empty question; record skipped")
            continue
        qid = check_id(str(rec["qid"]), where, "qid")
        if qid in data.queries:
            data.issues.append(f"{where}: qid {qid} is used by an earlier record; record skipped (first one kept)")
            continue
        if any(not isinstance(rec.get(key) or [], list) for key in ("positive_ctxs", "negative_ctxs")):
            data.issues.append(f"{where}: positive_ctxs / negative_ctxs must be lists of {{cid, text}}; record skipped")
            continue
        data.queries[qid] = str(rec["question"]).strip()
        if rec.get("asin"):
            data.query_group[qid] = str(rec["asin"])
        cands, rels = data.candidates.setdefault(qid, []), data.qrels.setdefault(qid, {})
        for default, key in ((1, "positive_ctxs"), (0, "negative_ctxs")):
            for ctx in rec.get(key) or []:
                if not isinstance(ctx, dict) or not str(ctx.get("text") or "").strip() or "cid" not in ctx:
                    data.issues.append(f"{where}: a {key} entry lacks cid or text; entry skipped")
                    continue
                cid = check_id(str(ctx["cid"]), where, "cid")
                source = ctx.get("source") if isinstance(ctx.get("source"), str) else None
                docid = _add_doc(data, cid, str(ctx["text"]), source, where)
                label = ctx.get("label", default)  # a graded positive (ePQA: 1 partial, 2 full) keeps its grade
                if default and (not isinstance(label, int) or isinstance(label, bool) or label < 1):
                    data.issues.append(f"{where}: positive {cid} has label {label!r}, not an integer >= 1; taken as 1")
                    label = 1
                if docid not in rels:
                    cands.append(docid)
                    rels[docid] = label if default else 0
    return data
