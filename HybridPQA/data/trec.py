"""TREC run files: `qid Q0 docid rank score tag`, in `scoring.ranking`'s order with its untied scores,
so trec_eval, pytrec_eval and ranx all read the same ranking from them."""
from __future__ import annotations

import math
from pathlib import Path

from HybridPQA.data.readers import read_split
from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic
from HybridPQA.scoring import DECIMALS, ranking

Run = dict[str, dict[str, float]]


def write_trec(run: Run, path: Path, tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for qid, scores in run.items():
        lines += [f"{qid} Q0 {docid} {rank} {score:.{DECIMALS}f} {tag}"
                  for rank, (docid, score) in enumerate(ranking(scores), 1)]
    write_atomic(path, "\n".join(lines) + "\n")


def _lines(path: Path, what: str) -> list[str]:
    if not Path(path).is_file():
        raise InputError(f"{path}: {what} not found" + ("; give a file, not a directory" if Path(path).is_dir() else ""))
    try:
        return Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (offset {err.start}); a {what} is plain text") from None


def read_trec(path: Path) -> Run:
    """A TREC run; every score must be a finite number."""
    run: Run = {}
    for line_no, line in enumerate(_lines(path, "TREC run"), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 6:
            raise InputError(f"{path}:{line_no}: expected 6 columns 'qid Q0 docid rank score tag', got {len(cols)}")
        try:
            score = float(cols[4])
        except ValueError:
            raise InputError(f"{path}:{line_no}: score {cols[4]!r} is not a number") from None
        if not math.isfinite(score):
            raise InputError(f"{path}:{line_no}: score {cols[4]!r} is not a finite number; fix the run that wrote it")
        run.setdefault(cols[0], {})[cols[2]] = score
    return run


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels (`qid 0 docid rel`) or BEIR qrels (`query-id<TAB>corpus-id<TAB>score`, header optional)."""
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in enumerate(_lines(Path(path), "qrels file"), 1):
        cols = line.split()
        if not cols or (line_no == 1 and not cols[-1].lstrip("-").isdigit()):
            continue  # blank line or BEIR header
        if len(cols) not in (3, 4) or not cols[-1].lstrip("-").isdigit():
            raise InputError(f"{path}:{line_no}: expected 'qid 0 docid rel' or 'qid<TAB>docid<TAB>rel'")
        qrels.setdefault(cols[0], {})[cols[-2]] = int(cols[-1])
    if not any(rel > 0 for docs in qrels.values() for rel in docs.values()):
        raise InputError(f"{path}: no positive judgement (relevance > 0); no metric can be computed from it")
    return qrels


def read_judgements(path: str | Path) -> dict[str, dict[str, int]]:
    """{qid: {docid: label}} from TREC or BEIR qrels, or from a pairs split (.json / .csv) with its labels."""
    path = Path(path)
    return read_split(path).qrels if path.suffix in (".json", ".csv") else read_qrels(path)
