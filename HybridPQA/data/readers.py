"""Readers for the four data formats, all returning one `RankingData`.

Your own pairs (.jsonl, .csv / .tsv with query and positive columns, a saved `datasets`
folder) are read by data.pairs. The formats of the original work:
(a) hetPQA evidence-ranking TSV: qid, ASIN, qa_pair_id, question, candidate, label, source, confidence
(b) hetPQA answer-generation TSV: ASIN, question, candidate, answer, source (every row a positive)
(c) the original code's JSON: [{qid, question, positive_ctxs: [{cid, source, text}], negative_ctxs}]
(d) BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv

A file that cannot be read at all raises `InputError`, and so does a split with no question, no
document or no positive judgement, and an id that TREC files cannot hold (empty, or with a space,
tab, line break or other separator): each error names the file and line. A bad row (empty
question, malformed JSON line, qrels naming an unknown document, ...) is skipped, and recorded in
`issues` with its file and line, so the count reaches the log and the results.

Duplicates, one rule: the first occurrence wins and every later one is skipped and reported
(a BEIR document or query `_id`, a JSON record's qid, a TSV qid reused for another question).
A candidate id reused for another text within one rerank split is renamed instead (`<id>.<n>`),
since both texts are candidates. Files may start with a UTF-8 byte-order mark.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from HybridPQA.data.pairs import pairs_header, read_pairs_dataset, read_pairs_jsonl, read_pairs_table
from HybridPQA.data.ranking import RankingData, check_id
from HybridPQA.errors import InputError

ER_COLUMNS = ("qid", "ASIN", "qa_pair_id", "question", "candidate", "label", "source")
AG_COLUMNS = ("ASIN", "question", "candidate", "answer", "source")
csv.field_size_limit(1 << 30)


def _require(data: RankingData, path: Path) -> RankingData:
    """A split that can be evaluated: questions, documents and at least one positive judgement."""
    first = f"; first skipped: {data.issues[0]}" if data.issues else ""
    if not data.queries:
        raise InputError(f"{path}: no usable question in this split (empty file, header only, or every row "
                         f"skipped){first}")
    if not data.docs:
        raise InputError(f"{path}: no usable document in this split{first}")
    if not data.judged_qids():
        raise InputError(f"{path}: none of its {len(data.queries)} questions has a positive judgement (label/score "
                         "> 0), so no metric can be computed; check the labels or the qrels")
    return data


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


def _jsonl(path: Path, data: RankingData):
    if not path.is_file():
        raise InputError(f"{path}: not found; a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/")
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                key = str(obj["_id"])
            except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
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


def read_split(path: str | Path, corpus: dict[str, str] | None = None) -> RankingData:
    """Dispatch on the file: a pairs file (.jsonl, or .csv / .tsv with query and positive columns, or a
    saved `datasets` folder; `corpus` resolves their ids), .csv (hetPQA, by header), .json, or a BEIR
    qrels .tsv."""
    try:
        return _read_split(Path(path), corpus)
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at offset "
                         f"{err.start}, in it or its BEIR files); re-save it as UTF-8") from None


PAIRS_SUFFIXES = (".jsonl", ".csv", ".tsv", ".json")  # a split named without its suffix: the first found


def _resolve(path: Path) -> Path:
    """`path` itself, or for a name without a suffix (`train`) the one file or datasets folder of that
    stem (train.jsonl, train.csv, train.tsv, train.json, train/); a one-line error naming them if none."""
    if path.exists() or path.suffix:
        if not path.exists():
            others = [path.with_suffix(s).name for s in PAIRS_SUFFIXES if path.with_suffix(s).is_file()]
            hint = f"; this folder has {', '.join(others)}: give that name" if others else ""
            raise InputError(f"{path}: data file not found{hint}; check --data and the RETRIEVER.DATA.*_DATA_PATH keys "
                             "(or run `hybridpqa prepare` for the paper's data)")
        return path
    found = [path.with_name(path.name + s) for s in PAIRS_SUFFIXES if path.with_name(path.name + s).is_file()]
    if not found:
        raise InputError(f"{path}: no {path.name}.jsonl, {path.name}.csv, {path.name}.tsv, {path.name}.json or "
                         f"datasets folder {path.name}/ here; check --data and the RETRIEVER.DATA.*_DATA_PATH keys")
    return found[0]


def _read_split(path: Path, corpus: dict[str, str] | None) -> RankingData:
    path = _resolve(path)
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        return _require(read_pairs_dataset(path, corpus), path)
    if not path.is_file():
        raise InputError(f"{path}: a folder, not a data file or a saved datasets dataset; check --data and the "
                         "RETRIEVER.DATA.*_DATA_PATH keys")
    if path.suffix == ".json":
        return _require(read_hybridpqa_json(path), path)
    if path.suffix == ".jsonl":
        return _require(read_pairs_jsonl(path, corpus), path)
    if path.suffix == ".tsv" and path.parent.name == "qrels":
        return _require(read_beir(path), path)
    if path.suffix in (".csv", ".tsv") and pairs_header(path):
        return _require(read_pairs_table(path, corpus), path)
    if path.suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8-sig") as handle:
            header = handle.readline().rstrip("\r\n").split("\t")
        if header == [""]:
            raise InputError(f"{path}: empty file; a .csv / .tsv split needs a header (query,positive[,negative] "
                             "for your pairs) and rows")
        if "label" in header or "qid" in header:
            return _require(read_evidence_ranking(path), path)
        if not set(AG_COLUMNS) <= set(header):
            raise InputError(f"{path}: columns {', '.join(h for h in header if h)[:120]}: not a format this reads; "
                             "your pairs need a header with query and positive (and optionally negative), e.g. "
                             "query,positive")
        return _require(read_answer_generation(path), path)
    raise InputError(f"{path}: unknown data format; use pairs (.jsonl, or .csv / .tsv with query and positive "
                     "columns), a .csv (hetPQA TSV), .json (HybridPQA records) or a BEIR qrels/<split>.tsv")


def find_split(path_data: str | Path, name: str) -> Path:
    """A split NAME in a data folder: NAME.json, NAME.csv, NAME.jsonl, NAME.tsv or qrels/NAME.tsv."""
    root = Path(path_data)
    names = (f"{name}.json", f"{name}.csv", f"{name}.jsonl", f"{name}.tsv", f"qrels/{name}.tsv")
    for candidate in names:
        if (root / candidate).is_file():
            return root / candidate
    raise InputError(f"{root}: no split {name!r} (looked for {', '.join(names)})")
