"""One reader for every data format (`read_split`, dispatching on the file), all returning one
`RankingData`: your own pairs (.jsonl, .csv / .tsv with query and positive columns, a saved
`datasets` folder: data.pairs), the product-QA formats of the original work (hetPQA TSVs, the
original JSON: data.product_qa) and a BEIR folder (data.beir).

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

from pathlib import Path

from HybridPQA.data.beir import read_beir
from HybridPQA.data.pairs import pairs_header, read_pairs_dataset, read_pairs_jsonl, read_pairs_table
from HybridPQA.data.product_qa import (AG_COLUMNS, ER_COLUMNS, read_answer_generation, read_epqa,  # noqa: F401
                                       read_evidence_ranking, read_hybridpqa_json)
from HybridPQA.data.ranking import RankingData
from HybridPQA.errors import InputError

__all__ = ["ER_COLUMNS", "RankingData", "find_split", "read_answer_generation", "read_beir", "read_epqa",
           "read_evidence_ranking", "read_split"]


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
