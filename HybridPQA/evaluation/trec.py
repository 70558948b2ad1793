"""TREC run files: `qid Q0 docid rank score tag`, ranked by (-score, docid) so ties are deterministic."""
from __future__ import annotations

from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic

Run = dict[str, dict[str, float]]


def write_trec(run: Run, path: Path, tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for qid, scores in run.items():
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        lines += [f"{qid} Q0 {docid} {rank} {score:.6f} {tag}" for rank, (docid, score) in enumerate(ranked, 1)]
    write_atomic(path, "\n".join(lines) + "\n")


def read_trec(path: Path) -> Run:
    if not Path(path).is_file():
        raise InputError(f"{path}: TREC run not found")
    run: Run = {}
    for line_no, line in enumerate(Path(path).read_text().splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) != 6:
            raise InputError(f"{path}:{line_no}: expected 6 columns 'qid Q0 docid rank score tag', got {len(cols)}")
        try:
            run.setdefault(cols[0], {})[cols[2]] = float(cols[4])
        except ValueError:
            raise InputError(f"{path}:{line_no}: score {cols[4]!r} is not a number") from None
    return run


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels (`qid 0 docid rel`) or BEIR qrels (`query-id<TAB>corpus-id<TAB>score`, header optional)."""
    qrels: dict[str, dict[str, int]] = {}
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: qrels file not found")
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        cols = line.split()
        if not cols or (line_no == 1 and not cols[-1].lstrip("-").isdigit()):
            continue  # blank line or BEIR header
        if len(cols) not in (3, 4) or not cols[-1].lstrip("-").isdigit():
            raise InputError(f"{path}:{line_no}: expected 'qid 0 docid rel' or 'qid<TAB>docid<TAB>rel'")
        qrels.setdefault(cols[0], {})[cols[-2]] = int(cols[-1])
    return qrels
