"""The in-process corpus store: a corpus's sparse and dense indexes (retrieval.index) in this
process's memory, each head searched by the engine INDEX.SPARSE / INDEX.DENSE chooses
(retrieval.engines), the hybrid as every store finds it (retrieval.store.CorpusStore).

Saved as <dir>/sparse/ and <dir>/dense/ (retrieval.index), the layout `hybridpqa evaluate`
writes to <run>/index/<split>/, with approximate engines once built in <dir>/engines/.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, HYBRID, SPARSE
from HybridPQA.retrieval.engines import EngineSettings, build_engine
from HybridPQA.retrieval.folder import ENGINES, read_index_meta
from HybridPQA.retrieval.index import DenseIndex, SparseIndex
from HybridPQA.retrieval.kernels import keep_largest
from HybridPQA.retrieval.store import CorpusStore

INDEXES = {SPARSE: SparseIndex, DENSE: DenseIndex}  # the corpus index that serves each indexed head (heads.HEADS)


class CorpusIndex(CorpusStore):
    """{"sparse": SparseIndex, "dense": DenseIndex} over one list of docids, searched by the engines
    `settings` chooses: built on first use, and kept in <path>/engines/ once the index has a folder
    (`save`, `load`), so an approximate engine is built once per index and build parameters."""

    wide_heads = True  # each engine is asked for k' documents, as the recall curves were measured

    def __init__(self, indexes: dict[str, SparseIndex | DenseIndex], settings: EngineSettings | None = None,
                 path: Path | None = None):
        if not indexes:
            raise ValueError("a corpus index needs a sparse or a dense index")
        self.indexes, self.settings, self.engines, self.path = indexes, settings or EngineSettings(), {}, path
        self.hybrid, self.candidates, self.norm_sample = (self.settings.hybrid, self.settings.candidates,
                                                          self.settings.norm_sample)
        self.docids = next(iter(indexes.values())).docids
        if any(ix.docids != self.docids for ix in indexes.values()):
            raise InputError("the sparse and dense indexes name different documents; rebuild the index")

    @classmethod
    def build(cls, doc_reps: dict, docids: list[str], settings: EngineSettings | None = None,
              terms: list[str] | None = None):
        """Every head of `doc_reps` that a corpus index serves (INDEXES), sparse first."""
        return cls({head: kind.build(doc_reps[head], docids, terms) for head, kind in INDEXES.items()
                    if head in doc_reps}, settings)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.indexes)

    def engine(self, head: str):
        if head not in self.engines:
            keep = fingerprint = None
            if self.path is not None:
                keep, fingerprint = self.path / ENGINES, _fingerprint(self.path / head)
            self.engines[head] = build_engine(head, self.indexes[head], self.settings, keep, fingerprint or "")
        return self.engines[head]

    def engine_heads(self, scorers: tuple[str, ...]) -> list[str]:
        """The heads whose engines searching `scorers` asks (none when every run is exact)."""
        if self.settings.exact:
            return []
        return [h for h in self.indexes if h in scorers or HYBRID in scorers and self.settings.hybrid == "candidates"]

    def ready(self, scorers: tuple[str, ...]) -> dict[str, float]:
        """Build (or load) the engines `scorers` need now, so search times only searching: {head: seconds}."""
        seconds = {}
        for head in self.engine_heads(scorers):
            started = time.perf_counter()
            self.engine(head)
            seconds[head] = round(time.perf_counter() - started, 3)
        return seconds

    # -- the store's primitives ------------------------------------------------------------------
    def exact_head(self, head: str) -> bool:
        return self.settings.exact_head(head)

    def width(self, head: str) -> int:
        return self.settings.width(head)

    def whole(self, scorers: tuple[str, ...]) -> bool:
        return self.settings.exact or super().whole(scorers)

    def head_search(self, head: str, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        if head == SPARSE and self.settings.query_terms:
            queries = keep_largest(queries, self.settings.query_terms)
        return self.engine(head).search(queries, k)

    def all_scores(self, q_reps: dict, rows: slice | None = None) -> dict[str, np.ndarray]:
        """{head: (Q, N)} exact scores of queries `rows` of `q_reps` against every document."""
        rows = rows or slice(None)
        return {h: self.indexes[h].scores(q_reps[h][rows]) for h in self.indexes if h in q_reps}

    def exact_scores(self, q_reps: dict, rows: np.ndarray) -> dict[str, np.ndarray]:
        """(Q, C) document rows (-1: none) -> {head: (Q, C)} their exact scores (0 at -1)."""
        return {h: self.indexes[h].candidate_scores(q_reps[h], rows) for h in self.indexes if h in q_reps}

    def doc_vectors(self, rows: np.ndarray) -> tuple:
        """(sparse CSR or None, dense array or None) of the documents at `rows`."""
        sparse, dense = self.indexes.get(SPARSE), self.indexes.get(DENSE)
        return (sparse.by_doc[rows] if sparse is not None else None,
                np.asarray(dense.vectors[rows]) if dense is not None else None)

    def save(self, path: Path) -> list[str]:
        """The head indexes into `path`/<head>/ -> the names written there."""
        for head, index in self.indexes.items():
            index.save(Path(path) / head)
        return list(self.indexes)

    def describe(self) -> dict:
        """Where the vectors live and how the hybrid is found (as a database's describe)."""
        return {"engine": "memory", "hybrid": self.settings.hybrid, "documents": len(self.docids)}

    @classmethod
    def load(cls, path: Path, settings: EngineSettings | None = None) -> CorpusIndex:
        path = Path(path)
        indexes = {head: kind.load(path / head) for head, kind in INDEXES.items() if (path / head / "meta.json").is_file()}
        if not indexes:
            raise InputError(f"{path}: no index here (no sparse/meta.json or dense/meta.json); build one with "
                             "`hybridpqa index`")
        return cls(indexes, settings, path)


def open_index(path: Path, model: str, encoding: dict, docids: list[str], settings: EngineSettings | None = None
               ) -> CorpusIndex:
    """A saved index (`hybridpqa index`, or a run's index/<split>/) in place of encoding a corpus again,
    checked to be of this `model`, with its `encoding` settings, over these `docids` in this order."""
    meta = read_index_meta(path)
    if not _same_model(meta["model"], model):
        raise InputError(f"{path}: indexed with {meta['model']}, not {model}; give an index of this model")
    if meta["encoding"] != json.loads(json.dumps(encoding)):
        raise InputError(f"{path}: indexed with other encoding settings ({meta['encoding']}) than this model's "
                         f"({encoding}); index again with these settings")
    corpus = CorpusIndex.load(path, settings)
    if corpus.docids != docids:
        same = "the same documents in another order" if set(corpus.docids) == set(docids) else \
            f"{len(set(corpus.docids) ^ set(docids))} documents differ"
        raise InputError(f"{path}: indexes {len(corpus.docids)} documents, this corpus has {len(docids)} ({same}); "
                         "give the index of this corpus")
    return corpus


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.resolve() == pb.resolve() if pa.exists() and pb.exists() else a == b


def _fingerprint(folder: Path) -> str:
    """What names one saved head index: its meta.json (docids, shape, lengths) and its arrays' sizes."""
    digest = hashlib.sha256((folder / "meta.json").read_bytes())
    for file in sorted(folder.glob("*.npy")):
        digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return digest.hexdigest()
