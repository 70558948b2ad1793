"""One split of ranking data, whatever file it came from."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from HybridPQA.errors import InputError


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
    hard_negatives: dict[str, list[str]] = field(default_factory=dict)  # qid -> docids (pairs files' negatives)
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
                           {q: self.query_group[q] for q in qids if q in self.query_group}, self.issues,
                           {q: self.hard_negatives[q] for q in qids if q in self.hard_negatives})


def check_id(value: str, where: str, what: str = "id") -> str:
    """`value` if TREC files can hold it: not empty, no whitespace, separators or control characters."""
    bad = [c for c in value if c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if not value or bad:
        why = "is empty" if not value else f"contains {bad[0]!r}"
        raise InputError(f"{where}: {what} {value!r} {why}; ids must be non-empty with no spaces, tabs or line "
                         "breaks (TREC run files are space-separated); fix the id in the file")
    return value


