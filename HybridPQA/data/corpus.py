"""Any corpus or query file to {id: text}, for `hybridpqa index` / `search` and the Python API.

Formats, by name:
- `.jsonl`: one object per line with an id (`_id`, `id`, `docid` or `qid`) and a text (`text`,
  `contents` or `query`; a `title` is put in front), e.g. BEIR's corpus.jsonl and queries.jsonl;
- `.tsv`: `id<TAB>text` or `id<TAB>title<TAB>text`, an optional header whose first column is
  `id`, `_id`, `docid` or `qid`.

Nothing is dropped: a duplicate id, an empty text or a malformed line is an error naming the
file and line, and so is a file with no text at all.
"""
from __future__ import annotations

from pathlib import Path

from HybridPQA.data.ranking import check_id
from HybridPQA.errors import InputError
from HybridPQA.files import jsonl_records

ID_KEYS = ("_id", "id", "docid", "qid")
TEXT_KEYS = ("text", "contents", "query")
FORMATS = ".jsonl (BEIR corpus.jsonl / queries.jsonl, or {id, text} lines) or .tsv (id<TAB>text, id<TAB>title<TAB>text)"


def _jsonl(path: Path):
    for line, obj, bad in jsonl_records(path):
        if bad:
            raise InputError(f"{path}:{line}: invalid JSON ({bad}); expected one object per line")
        key = next((k for k in ID_KEYS if isinstance(obj, dict) and k in obj), None)
        if key is None:
            raise InputError(f"{path}:{line}: no id field (one of {', '.join(ID_KEYS)}); add one")
        wrong = [k for k in (key, "title", *TEXT_KEYS) if obj.get(k) is not None and not isinstance(obj[k], str)]
        if wrong:
            raise InputError(f"{path}:{line}: {wrong[0]} is a JSON {type(obj[wrong[0]]).__name__}, not a string; "
                             "ids, titles and texts are strings (quote it)")
        text = " ".join(obj[k].strip() for k in ("title", *TEXT_KEYS) if obj.get(k))
        yield line, obj[key], text


def _tsv(path: Path):
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line, raw in enumerate(handle, 1):
            raw = raw.rstrip("\r\n")
            if not raw.strip():
                continue
            cols = raw.split("\t")
            if line == 1 and cols[0].strip().lower() in ID_KEYS:
                continue  # header
            if len(cols) not in (2, 3):
                raise InputError(f"{path}:{line}: {len(cols)} tab-separated columns; expected id<TAB>text or "
                                 "id<TAB>title<TAB>text")
            yield line, cols[0].strip(), " ".join(c.strip() for c in cols[1:] if c.strip())


def read_texts(path: str | Path, what: str = "document") -> dict[str, str]:
    """{id: text} of a corpus (`what` = "document") or query file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    rows = {".jsonl": _jsonl, ".tsv": _tsv}.get(path.suffix)
    if rows is None:
        raise InputError(f"{path}: unknown {what} file format {path.suffix or '(no extension)'!r}; use {FORMATS}")
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    try:
        for line, key, text in rows(path):
            check_id(key, f"{path}:{line}", f"{what} id")
            if key in texts:
                raise InputError(f"{path}:{line}: {what} id {key!r} already used on line {first_line[key]}; ids must "
                                 "be unique (rename or remove one)")
            if not text:
                raise InputError(f"{path}:{line}: {what} {key!r} has an empty text; fill it in or remove the line")
            texts[key], first_line[key] = text, line
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (offset {err.start}); re-save it as UTF-8") from None
    if not texts:
        raise InputError(f"{path}: no {what} in this file (empty, or only a header)")
    return texts


def check_texts(texts, what: str = "document", source: str = "") -> dict[str, str]:
    """{id: text} from a dict, or a list of texts (ids "0", "1", ...), with the checks a file's lines
    get (read_texts): ids fit a TREC file, texts are non-empty strings, at least one. The Python API
    and the commands go through this one check."""
    where = source or "the " + what + "s given"
    if isinstance(texts, str):
        raise InputError(f"{where}: a single string; give a list of texts or {{id: text}}")
    if not isinstance(texts, dict):
        try:
            texts = {str(i): text for i, text in enumerate(texts)}
        except TypeError:
            raise InputError(f"{where}: {type(texts).__name__} is not a list of texts or {{id: text}}") from None
    if not texts:
        raise InputError(f"{where}: no {what}; give at least one")
    for key, text in texts.items():
        if not isinstance(key, str):
            raise InputError(f"{where}: {what} id {key!r} is a {type(key).__name__}; ids are strings")
        check_id(key, where, f"{what} id")
        if not isinstance(text, str):
            raise InputError(f"{where}: {what} {key!r} is a {type(text).__name__}, not a text")
        if not text.strip():
            raise InputError(f"{where}: {what} {key!r} has an empty text")
    return dict(texts)
