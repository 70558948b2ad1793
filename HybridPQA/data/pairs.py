"""Your own training pairs, as one `RankingData`:

(a) `.jsonl`: {"query": ..., "positive": text or [texts], "negatives": [texts]} per line
    (sentence-transformers' "anchor" / "negative" names work too);
(b) `.csv` / `.tsv` with a header holding `query` and `positive`, and optionally `negative`;
(d) a Hugging Face `datasets` dataset saved with `save_to_disk` (a folder), with those columns.

With RETRIEVER.DATA.CORPUS_PATH set (a corpus file, data.corpus formats), `positive` and
`negatives` are document ids into it instead of texts.

Rows with the same query text are one question with several positives. Identical texts are one
document. A row without a query or a positive is skipped and recorded in `issues` (file:line),
like every reader's. A pairs split retrieves from all its documents (every positive and negative)
in evaluation; in training each question's negatives are its hard negatives, topped up with
random documents.
"""
from __future__ import annotations

import csv
from pathlib import Path

from HybridPQA.data.ranking import RankingData
from HybridPQA.errors import InputError
from HybridPQA.files import jsonl_records

QUERY_KEYS, POSITIVE_KEYS, NEGATIVE_KEYS = ("query", "anchor", "question"), ("positive", "positives"), \
    ("negatives", "negative")


def _values(value) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def _not_text(name: str, value, many: bool) -> str | None:
    """Why `value` is no text (nor, with `many`, a list of texts); None when it is one. Numbers, dicts
    and the like are never turned into text: "5" is not a document anyone wrote."""
    values = value if many and isinstance(value, (list, tuple)) else [value]
    bad = next((v for v in values if v is not None and not isinstance(v, str)), None)
    if bad is None:
        return None
    return f"{name} is a {type(bad).__name__} ({str(bad)[:30]!r}), not a text{' or a list of texts' if many else ''}"


def _first(record: dict, keys: tuple[str, ...]):
    return next((record[k] for k in keys if k in record), None)


class PairsBuilder:
    """Collects (query, positives, negatives) rows into a RankingData."""

    def __init__(self, name: str, corpus: dict[str, str] | None):
        self.data = RankingData(name)
        self.corpus = corpus
        self.doc_of_text: dict[str, str] = {}
        self.qid_of_text: dict[str, str] = {}

    def _doc(self, value: str, where: str) -> str | None:
        if self.corpus is not None:  # ids into CORPUS_PATH
            if value not in self.corpus:
                self.data.issues.append(f"{where}: document id {value!r} is not in RETRIEVER.DATA.CORPUS_PATH; skipped")
                return None
            self.data.docs[value] = self.corpus[value]
            return value
        docid = self.doc_of_text.setdefault(value, f"d{len(self.doc_of_text)}")
        self.data.docs[docid] = value
        return docid

    def add(self, query, positives, negatives, where: str) -> None:
        problem = (_not_text("query", query, False) or _not_text("positive", positives, True)
                   or _not_text("negatives", negatives, True))
        if problem:
            self.data.issues.append(f"{where}: {problem}; row skipped")
            return
        query = (query or "").strip()
        positives, negatives = _values(positives), _values(negatives)
        if not query or not positives:
            self.data.issues.append(f"{where}: no query or no positive; row skipped")
            return
        qid = self.qid_of_text.setdefault(query, f"q{len(self.qid_of_text)}")
        self.data.queries[qid] = query
        rels = self.data.qrels.setdefault(qid, {})
        for docid in filter(None, (self._doc(v, where) for v in positives)):
            rels[docid] = 1
        hard = self.data.hard_negatives.setdefault(qid, [])
        for docid in filter(None, (self._doc(v, where) for v in negatives)):
            if docid not in hard and rels.get(docid, 0) <= 0:
                hard.append(docid)
        if not rels:
            del self.data.qrels[qid]

    def build(self) -> RankingData:
        for qid, rels in self.data.qrels.items():  # a later row may have made a negative a positive
            self.data.hard_negatives[qid] = [d for d in self.data.hard_negatives.get(qid, []) if d not in rels]
        return self.data


def read_pairs_jsonl(path: Path, corpus: dict[str, str] | None = None) -> RankingData:
    pairs = PairsBuilder(path.stem, corpus)
    for line, record, bad in jsonl_records(path):
        where = f"{path}:{line}"
        if bad:
            pairs.data.issues.append(f"{where}: malformed JSON line; skipped")
            continue
        if not isinstance(record, dict):
            pairs.data.issues.append(f"{where}: not a JSON object; skipped")
            continue
        pairs.add(_first(record, QUERY_KEYS), _first(record, POSITIVE_KEYS), _first(record, NEGATIVE_KEYS), where)
    return pairs.build()


def pairs_header(path: Path) -> list[str] | None:
    """The header of a .csv / .tsv pairs file (`query` and `positive` columns), else None."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
    header = next(csv.reader([first], delimiter="\t" if "\t" in first else ","), [])
    names = [h.strip().lower() for h in header]
    return names if any(k in names for k in QUERY_KEYS) and "positive" in names else None


def read_pairs_table(path: Path, corpus: dict[str, str] | None = None) -> RankingData:
    pairs = PairsBuilder(path.stem, corpus)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        reader = csv.DictReader(handle, delimiter="\t" if "\t" in first else ",")
        reader.fieldnames = [h.strip().lower() for h in reader.fieldnames or []]
        for row in reader:
            pairs.add(_first(row, QUERY_KEYS), row.get("positive"), row.get("negative"), f"{path}:{reader.line_num}")
    return pairs.build()


def read_pairs_dataset(path: Path, corpus: dict[str, str] | None = None) -> RankingData:
    """A `datasets.Dataset` saved to disk (`save_to_disk`), or a DatasetDict's "train" split."""
    try:
        import datasets
    except ImportError:
        raise InputError(f"{path}: a Hugging Face dataset folder; reading it needs `pip install datasets`") from None
    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise InputError(f"{path}: not a dataset saved with save_to_disk ({str(err).splitlines()[0][:100]})") from None
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise InputError(f"{path}: a DatasetDict without a 'train' split ({', '.join(dataset)}); save one split")
        dataset = dataset["train"]
    columns = set(dataset.column_names)
    if not columns & set(QUERY_KEYS) or not columns & set(POSITIVE_KEYS):
        raise InputError(f"{path}: columns {sorted(columns)}; a pairs dataset needs query (or anchor) and positive")
    pairs = PairsBuilder(path.name, corpus)
    for i, record in enumerate(dataset):
        pairs.add(_first(record, QUERY_KEYS), _first(record, POSITIVE_KEYS), _first(record, NEGATIVE_KEYS),
                  f"{path}: row {i}")
    return pairs.build()
