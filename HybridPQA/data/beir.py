"""A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) read into one `RankingData`
(data.readers: the rules every format keeps)."""
from __future__ import annotations

from pathlib import Path

from HybridPQA.data.ranking import RankingData, check_id
from HybridPQA.errors import InputError
from HybridPQA.files import jsonl_records


def _jsonl(path: Path, data: RankingData):
    if not path.is_file():
        raise InputError(f"{path}: not found; a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/")
    seen: set[str] = set()
    for line, obj, bad in jsonl_records(path):
        try:
            if bad:
                raise ValueError(bad)
            key = str(obj["_id"])
        except (ValueError, KeyError, TypeError):
            data.issues.append(f"{path}:{line}: malformed JSON line (needs an _id); line skipped")
            continue
        check_id(key, f"{path}:{line}", "_id")
        if key in seen:
            data.issues.append(f"{path}:{line}: _id {key} appeared on an earlier line; line skipped (first kept)")
            continue
        seen.add(key)
        yield key, obj


def read_beir(qrels_path: Path) -> RankingData:
    """(d) `<root>/qrels/<split>.tsv`; queries are those judged in the split, documents the corpus."""
    root = qrels_path.parent.parent
    data = RankingData(qrels_path.stem)
    for docid, obj in _jsonl(root / "corpus.jsonl", data):
        text = " ".join(t for t in (obj.get("title") or "", obj.get("text") or "") if t).strip()
        if text:
            data.docs[docid] = text
        else:
            data.issues.append(f"{root / 'corpus.jsonl'}: document {docid} has no title or text; skipped")
    all_queries = {qid: str(obj.get("text") or "").strip() for qid, obj in _jsonl(root / "queries.jsonl", data)}
    if not data.docs:
        raise InputError(f"{root / 'corpus.jsonl'}: no usable document (empty corpus, or every line skipped)")
    with qrels_path.open(encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, 1):
            cols = text.split()  # BEIR's tabs, or TREC qrels' spaces (query-id 0 corpus-id score)
            if not cols:
                continue
            if line == 1 and not cols[-1].lstrip("-").isdigit():
                continue  # header
            where = f"{qrels_path}:{line}"
            if len(cols) not in (3, 4) or not cols[-1].lstrip("-").isdigit():
                data.issues.append(f"{where}: expected query-id, corpus-id, score; line skipped")
                continue
            qid, docid, score = cols[0], cols[-2], int(cols[-1])
            if docid not in data.docs:
                data.issues.append(f"{where}: document {docid} is not in corpus.jsonl; judgement skipped")
            elif not all_queries.get(qid):
                data.issues.append(f"{where}: query {qid} is missing or empty in queries.jsonl; judgement skipped")
            else:
                data.queries[qid] = all_queries[qid]
                data.qrels.setdefault(qid, {})[docid] = score
    return data
