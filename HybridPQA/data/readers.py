"""Readers for the four data formats, all returning one `RankingData`.

(a) hetPQA evidence-ranking TSV: qid, ASIN, qa_pair_id, question, candidate, label, source, confidence
(b) hetPQA answer-generation TSV: ASIN, question, candidate, answer, source (every row a positive)
(c) the original code's JSON: [{qid, question, positive_ctxs: [{cid, source, text}], negative_ctxs}]
(d) BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv

A file that cannot be read at all raises `InputError`. A bad row (empty question, malformed
JSON line, qrels naming an unknown document, ...) is skipped, and recorded in `issues` with
its file and line, so the count reaches the log and the results.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from HybridPQA.errors import InputError

ER_COLUMNS = ("qid", "ASIN", "qa_pair_id", "question", "candidate", "label", "source")
AG_COLUMNS = ("ASIN", "question", "candidate", "answer", "source")
csv.field_size_limit(1 << 30)


@dataclass
class RankingData:
    """One split. `candidates` set = rerank each query's list; None = retrieve from all `docs`."""

    name: str
    queries: dict[str, str] = field(default_factory=dict)  # qid -> question
    docs: dict[str, str] = field(default_factory=dict)  # docid -> context text
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # qid -> {docid: relevance > 0}
    candidates: dict[str, list[str]] | None = None  # qid -> docids to rerank
    doc_source: dict[str, str] = field(default_factory=dict)  # docid -> evidence source label
    query_group: dict[str, str] = field(default_factory=dict)  # qid -> product (ASIN)
    issues: list[str] = field(default_factory=list)  # skipped or repaired input, "file:line: what"
    first_stage: str | None = None  # the run whose top documents became `candidates` (RERANK.RUN)

    @property
    def mode(self) -> str:
        return "rerank" if self.candidates is not None else "retrieve"

    def positives(self, qid: str) -> list[str]:
        return [d for d, rel in self.qrels.get(qid, {}).items() if rel > 0]

    def judged_qids(self) -> list[str]:
        """Queries with at least one positive: the only ones metrics are computed on."""
        return [q for q in self.queries if self.positives(q)]

    def head(self, count: int | None) -> RankingData:
        """The first `count` queries (DATA.COUNT), with only the documents they need in rerank mode."""
        if count is None or count >= len(self.queries):
            return self
        qids = list(self.queries)[:count]
        cands = None if self.candidates is None else {q: self.candidates[q] for q in qids}
        keep = set(self.docs) if cands is None else {d for q in qids for d in cands[q]}
        return RankingData(self.name, {q: self.queries[q] for q in qids},
                           {d: t for d, t in self.docs.items() if d in keep},
                           {q: self.qrels[q] for q in qids if q in self.qrels}, cands,
                           {d: s for d, s in self.doc_source.items() if d in keep},
                           {q: self.query_group[q] for q in qids if q in self.query_group}, self.issues)


def _tsv_rows(path: Path, required: tuple[str, ...]):
    """(line number, row) pairs of a tab-separated file, after checking its header."""
    with path.open(newline="", encoding="utf-8") as handle:
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
        data.queries.setdefault(qid, question)
        data.query_group[qid] = row["ASIN"]
        docid = _add_doc(data, row["qa_pair_id"], row["candidate"], row["source"], where)
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
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); expected a list of question records") from None
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a JSON list of {{qid, question, positive_ctxs, negative_ctxs}}")
    data = RankingData(path.stem, candidates={})
    for index, rec in enumerate(records):
        where = f"{path}: record {index}"
        if not isinstance(rec, dict) or not str(rec.get("question") or "").strip() or "qid" not in rec:
            data.issues.append(f"{where}: missing qid or empty question; record skipped")
            continue
        qid = str(rec["qid"])
        data.queries[qid] = str(rec["question"]).strip()
        if rec.get("asin"):
            data.query_group[qid] = str(rec["asin"])
        cands, rels = data.candidates.setdefault(qid, []), data.qrels.setdefault(qid, {})
        for label, key in ((1, "positive_ctxs"), (0, "negative_ctxs")):
            for ctx in rec.get(key) or []:
                if not isinstance(ctx, dict) or not str(ctx.get("text") or "").strip() or "cid" not in ctx:
                    data.issues.append(f"{where}: a {key} entry lacks cid or text; entry skipped")
                    continue
                docid = _add_doc(data, str(ctx["cid"]), str(ctx["text"]), ctx.get("source"), where)
                if docid not in rels:
                    cands.append(docid)
                    rels[docid] = label
    return data


def _jsonl(path: Path, data: RankingData):
    if not path.is_file():
        raise InputError(f"{path}: not found; a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/")
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                yield str(obj["_id"]), obj
            except (json.JSONDecodeError, KeyError, TypeError):
                data.issues.append(f"{path}:{line}: malformed JSON line (needs an _id); line skipped")


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
    with qrels_path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, 1):
            cols = text.rstrip("\n").split("\t")
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


def read_split(path: str | Path) -> RankingData:
    """Dispatch on the file: .csv (by header), .json, or a BEIR qrels .tsv."""
    try:
        return _read_split(Path(path))
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at offset "
                         f"{err.start}, in it or its BEIR files); re-save it as UTF-8") from None


def _read_split(path: Path) -> RankingData:
    if not path.is_file():
        raise InputError(f"{path}: data file not found; run `hybridpqa prepare` or check --path_data and the "
                         "RETRIEVER.DATA.*_DATA_PATH keys")
    if path.suffix == ".json":
        return read_hybridpqa_json(path)
    if path.suffix == ".tsv" and path.parent.name == "qrels":
        return read_beir(path)
    if path.suffix in (".csv", ".tsv"):
        header = path.open(encoding="utf-8").readline().rstrip("\n").split("\t")
        if "label" in header or "qid" in header:
            return read_evidence_ranking(path)
        return read_answer_generation(path)
    raise InputError(f"{path}: unknown data format; use a .csv (hetPQA TSV), .json (HybridPQA records) "
                     "or a BEIR qrels/<split>.tsv")


def find_split(path_data: str | Path, name: str) -> Path:
    """A split NAME in a data folder: NAME.csv, NAME.json or qrels/NAME.tsv."""
    root = Path(path_data)
    for candidate in (root / f"{name}.json", root / f"{name}.csv", root / "qrels" / f"{name}.tsv"):
        if candidate.is_file():
            return candidate
    raise InputError(f"{root}: no split {name!r} (looked for {name}.json, {name}.csv, qrels/{name}.tsv)")
