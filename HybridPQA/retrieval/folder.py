"""The files of a search index folder (what `hybridpqa index` and `SearchIndex.save` write), read and
written here only:

<index>/index.json     the model, its identity, encoding settings and fusion, the heads, the documents,
                       the default scorer, the database's record (one in a database)
<index>/texts.jsonl    {"id", "text"} per document: what search prints
<index>/config.yaml    the model's merged config, so search rebuilds the same model
<index>/docids.json    an index in a vector database: the ids of its rows
<index>/sparse/, dense/, engines/   an in-process index's head indexes and kept engines
"""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.files import jsonl_records, write_atomic

ENGINES = "engines"  # <index>/engines/: approximate engines built over it, kept
INDEX_FILE, TEXTS_FILE, CONFIG_FILE = "index.json", "texts.jsonl", "config.yaml"  # what makes an index searchable
DOCIDS_FILE = "docids.json"  # an index in a vector database: the ids of its rows


def write_index_files(folder: Path, meta: dict, texts: dict[str, str] | None, config: str | None) -> None:
    """Beside the head indexes: texts.jsonl (what search prints), config.yaml (the model's merged config,
    so search rebuilds the same model) and index.json, last: the model, its encoding and fusion, the
    heads, the documents and the default scorer."""
    folder = Path(folder)
    with (folder / TEXTS_FILE).open("w", encoding="utf-8") as handle:
        for docid, text in (texts or {}).items():
            handle.write(json.dumps({"id": docid, "text": text}) + "\n")
    if config is not None:
        write_atomic(folder / CONFIG_FILE, config)
    write_atomic(folder / INDEX_FILE, json.dumps(meta, indent=2))


def read_index_texts(file: Path) -> dict[str, str]:
    """texts.jsonl of an index folder: {id: text}, each line checked (a truncated or edited file is a
    one-line error naming its line)."""
    texts = {}
    for number, record, _ in jsonl_records(file, "index the corpus again"):
        if not (isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(record.get("text"), str)):
            raise InputError(f"{file}:{number}: not an {{\"id\": ..., \"text\": ...}} line (truncated or edited); "
                             "index the corpus again")
        texts[record["id"]] = record["text"]
    return texts


def read_index_meta(path: Path) -> dict:
    """index.json of a searchable index folder, checked; a one-line error naming the file."""
    meta_file = Path(path) / INDEX_FILE
    if not meta_file.is_file():
        raise InputError(f"{path}: not a search index (no {INDEX_FILE}); build one with `hybridpqa index`")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{meta_file}: unreadable ({err.__class__.__name__}); rebuild the index") from None
    missing = [k for k in ("model", "encoding", "fusion", "heads", "documents") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise InputError(f"{meta_file}: not a HybridPQA index description (no {', '.join(missing)}); rebuild the index")
    return meta


def read_docids(file: Path, count: int) -> list[str]:
    """docids.json of an index in a vector database: the ids of its `count` rows, checked."""
    try:
        docids = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{file}: unreadable ({err.__class__.__name__}); index the corpus again") from None
    if not isinstance(docids, list) or len(docids) != count:
        raise InputError(f"{file}: not the {count} document ids index.json counts; index the corpus again")
    return docids


def is_index(folder: Path) -> bool:
    """Whether `folder` holds a searchable index of ours: an index.json that parses with our keys."""
    try:
        read_index_meta(folder)
    except InputError:
        return False
    return True
