"""A corpus index kept in a vector database (Qdrant, Milvus) instead of this process's memory.

`VectorDatabase` is what every database adapter implements over one collection of documents
(point id = row number, `docid` kept beside it, a sparse and a dense vector per point):

- `upsert(rows, sparse, dense)`: a batch of documents, checked first (`check_batch`);
- `head_search(head, queries, k)`: one head's top k, (Q, k) rows (-1 where fewer) and scores;
- `vectors(rows)`: the stored vectors of some documents (for exact re-scoring);
- `count()`, `drop()`.

It is a corpus store (retrieval.store.CorpusStore), so its search is every store's: each head
from its own top-k; the hybrid as the union of each head's top k' re-scored exactly by both heads
and fused with the model's `Fusion`, with the same fixed sample of documents for z-score and
min-max statistics. An adapter may do that inside the engine (Qdrant's formula query, overriding
`fuse`), and offers the engine's own fusion as INDEX.HYBRID "native" (Qdrant's and Milvus's RRF,
Milvus's weighted ranker), whose loss against the exact hybrid scripts/bench_database.py measures.

A collection belongs to one index: each index folder has an id (its marker, `outputs.id_of`), which
the collection carries from its creation on (one call: Qdrant's metadata, Milvus's properties) and
index.json records. Only a collection that carries this folder's id is ever replaced; opening an
index checks the id and the document count (`verify`). The default collection name is the folder's
name and its id, so two folders of one name never share a collection (retrieval.databases).
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.retrieval.folder import DOCIDS_FILE
from HybridPQA.retrieval.kernels import dense_dots, sparse_dots
from HybridPQA.retrieval.store import CorpusStore
from HybridPQA.scoring import Fusion

log = logging.getLogger(__name__)
MARK = "hybridpqa"  # the marker a collection of ours carries: only those are ever dropped


def check_batch(rows: np.ndarray, sparse: sp.csr_matrix, dense: np.ndarray | None, vocab: int, dim: int | None,
                where: str) -> int:
    """A batch about to be written: shapes against the collection's, finite, non-negative sparse weights.
    -> how many documents have no sparse term (collapsed), which each adapter stores in its own way."""
    if sparse.shape[1] != vocab:
        raise InputError(f"{where}: sparse vectors over {sparse.shape[1]} terms, the collection's are over {vocab}; "
                         "index into a new collection (--collection) or drop this one")
    if dense is not None and dim is not None and dense.shape[1] != dim:
        raise InputError(f"{where}: {dense.shape[1]}-d dense vectors, the collection holds {dim}-d ones; "
                         "index into a new collection (--collection) or drop this one")
    if len(sparse.data) and (not np.isfinite(sparse.data).all() or sparse.data.min() < 0):
        raise InputError(f"{where}: sparse weights must be finite and >= 0 (the databases score by inner product "
                         "over non-negative impacts); this model's are not, so keep its index in memory")
    if dense is not None and not np.isfinite(dense).all():
        raise InputError(f"{where}: a dense vector holds NaN or inf; the model's output is broken")
    return int((np.diff(sparse.indptr) == 0).sum())


def sparse_rows(matrix: sp.csr_matrix) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    for i in range(matrix.shape[0]):
        span = slice(matrix.indptr[i], matrix.indptr[i + 1])
        yield matrix.indices[span], matrix.data[span]


class VectorDatabase(CorpusStore):
    """One collection in one database. Subclasses connect and implement the primitives."""

    name = ""
    embedded = False  # in the index folder (uri "")

    def __init__(self, uri: str, collection: str, docids: list[str], candidates: int = 200, norm_sample: int = 1000,
                 hybrid: str = "candidates", index_id: str = "", key: str | None = None):
        self.uri, self.collection, self.docids, self.index_id = uri, collection, docids, index_id
        self.candidates, self.norm_sample, self.hybrid = candidates, norm_sample, hybrid
        self.heads = (SPARSE, DENSE)
        self._vectors: tuple[np.ndarray, sp.csr_matrix, np.ndarray] | None = None

    # -- what an adapter implements ----------------------------------------------------------
    def create(self, vocab: int, dim: int) -> None:
        """A new collection, marked with {"id": self.index_id, "vocab", "dim"} in the same call."""
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def mark(self) -> dict | None:
        """The collection's mark (what `create` gave it), None if it has none: not ours."""
        raise NotImplementedError

    def delete(self) -> None:
        """Delete the collection (`drop` checks first that it is this index's)."""
        raise NotImplementedError

    def upsert(self, rows: np.ndarray, sparse: sp.csr_matrix, dense: np.ndarray) -> None:
        raise NotImplementedError

    def head_search(self, head: str, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def vectors(self, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """(U,) distinct rows -> their (U, V) sparse and (U, D) dense vectors, in that order."""
        raise NotImplementedError

    def doc_vectors(self, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        return self.vectors(np.asarray(rows))

    def native(self, q_reps: dict, fusion: Fusion, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The engine's own hybrid (INDEX.HYBRID "native"): (Q, k) rows and scores."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last write: what the engine needs before searching at full speed."""

    def close(self) -> None:
        pass

    # -- ownership -----------------------------------------------------------------------------
    def owner(self) -> str | None:
        """The id of the index the existing collection belongs to ("" for one HybridPQA wrote before ids)."""
        mark = self.mark()
        if mark is None:
            return None
        return str(mark.get("id", "")) if isinstance(mark, dict) else ""

    def claimable(self) -> bool:
        """Whether the collection exists and is this index's (a half-made one of an interrupted run
        included); a one-line error if it exists and is anyone else's, which is never touched. The
        documents' ids are checked against the database's limits first (`check_ids`)."""
        self.check_ids()
        with self.errors("open"):
            if not self.exists():
                return False
            owner = self.owner()
        if owner != self.index_id:
            whose = "is not one HybridPQA wrote" if owner is None else f"belongs to another index (id {owner or 'unknown'})"
            raise InputError(f"{self.uri}: collection {self.collection!r} {whose}, so it is left alone; choose "
                             "another --collection (or leave it out for one of this index's own)")
        return True

    def check_ids(self) -> None:
        """The documents' ids against the database's limits, before anything is encoded or written."""

    def replace(self) -> None:
        """Make room for this index's collection: an existing one is deleted only if it is this index's."""
        if self.claimable():
            with self.errors("replace"):
                self.delete()

    def drop(self) -> None:
        """Delete this index's collection (only if it carries this index's id)."""
        with self.errors("drop"):
            if self.exists():
                if self.owner() != self.index_id:
                    raise InputError(f"{self.uri}: collection {self.collection!r} is not this index's; left alone")
                self.delete()

    def verify(self, where: str) -> None:
        """On opening a saved index (`where`: its index.json): the collection exists, carries the
        index's id and holds its documents; else a one-line error."""
        with self.errors("open"):
            if not self.exists():
                raise InputError(f"{where}: its collection {self.collection!r} is not in {self.uri or 'the database'} "
                                 "(dropped, or another database); index again")
            owner = self.owner()
            if owner != self.index_id:
                raise InputError(f"{where}: collection {self.collection!r} in {self.uri} now holds "
                                 + ("data HybridPQA did not write" if owner is None else f"index {owner or '(no id)'}")
                                 + f", not this index ({self.index_id}); it was replaced: index again")
            count = self.count()
        if count != len(self.docids):
            raise InputError(f"{where}: collection {self.collection!r} holds {count} documents, the index "
                             f"{len(self.docids)}; it is incomplete or was changed: index again")

    @contextlib.contextmanager
    def errors(self, doing: str):
        """The database library's errors (connection refused, a missing collection, a refused name...) as
        one line naming the database and the collection."""
        try:
            yield
        except (InputError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as err:  # noqa: BLE001 - qdrant-client and pymilvus raise many kinds
            text = " ".join(str(err).split())[:200] or err.__class__.__name__
            raise InputError(f"{self.uri}: {self.name} could not {doing} collection {self.collection!r} "
                             f"({err.__class__.__name__}: {text}); check the server and RETRIEVER.INDEX.URI") from None

    # -- shared ------------------------------------------------------------------------------
    def describe(self) -> dict:
        """What index.json records: an embedded database's uri as "" (it lives in the index folder,
        which may move)."""
        return {"engine": self.name, "uri": "" if self.embedded else self.uri, "collection": self.collection,
                "documents": len(self.docids), "id": self.index_id}

    def save(self, path: Path) -> list[str]:
        """What the index folder keeps of a database's index: the ids of its rows -> the names written."""
        path.mkdir(parents=True, exist_ok=True)
        (path / DOCIDS_FILE).write_text(json.dumps(self.docids), encoding="utf-8")
        return [DOCIDS_FILE]

    def ready(self, scorers: tuple[str, ...]) -> dict[str, float]:
        return {}  # the database's own indexes are built when documents are written

    def sample(self) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
        """The fixed random documents (`sample_rows`, as every store's) and their vectors, read once."""
        if self._vectors is None:
            rows = self.sample_rows()
            self._vectors = (rows, *self.vectors(rows))
        return self._vectors

    def exact_scores(self, q_reps: dict, rows: np.ndarray) -> dict[str, np.ndarray]:
        """(Q, C) rows (-1: none) -> {head: (Q, C)} exact scores from the stored vectors (the fixed
        sample's are kept; the others are fetched)."""
        sample_rows, sample_sparse, sample_dense = self.sample() if self.norm_sample else (np.zeros(0, int), None, None)
        valid = rows >= 0
        known = valid & np.isin(rows, sample_rows)
        fetch = np.unique(rows[valid & ~known])
        blocks = [(sample_rows, sample_sparse, sample_dense, known)]
        if len(fetch):
            blocks.append((fetch, *self.vectors(fetch), valid & ~known))
        scores = {SPARSE: 0.0, DENSE: 0.0}
        for block_rows, sparse, dense, mine in blocks:  # each row scored from the block that holds it (0 elsewhere)
            if len(block_rows):
                local = np.where(mine, np.searchsorted(block_rows, np.maximum(rows, 0)), -1)
                scores[SPARSE] = scores[SPARSE] + sparse_dots(q_reps[SPARSE], sparse, local)
                scores[DENSE] = scores[DENSE] + dense_dots(q_reps[DENSE], dense, local)
        return {h: np.broadcast_to(np.float32(v), rows.shape) if np.isscalar(v) else v for h, v in scores.items()}

    def search(self, q_reps: dict, qids: list[str], fusion: Fusion, depth: int,
               scorers: tuple[str, ...] | None = None) -> dict:
        with self.errors("search"):
            return super().search(q_reps, qids, fusion, depth, scorers)

    def hits(self, q_reps: dict, fusion: Fusion, depth: int, scorer: str, detail: bool = False):
        with self.errors("search"):
            return super().hits(q_reps, fusion, depth, scorer, detail)


def push(database: VectorDatabase, batches: Iterator[tuple[np.ndarray, sp.csr_matrix, np.ndarray]],
         batch_size: int) -> dict:
    """Create the collection (replacing only one that carries this index's id) and write (rows,
    sparse, dense) batches into it, `batch_size` documents a request. -> counts: documents written,
    collapsed sparse vectors."""
    written = collapsed = 0
    for rows, sparse, dense in batches:
        if not written:
            database.replace()
            with database.errors("create"):
                database.create(sparse.shape[1], dense.shape[1])
        for start in range(0, len(rows), batch_size):
            part = slice(start, start + batch_size)
            collapsed += check_batch(rows[part], sparse[part], dense[part], sparse.shape[1], None, database.uri)
            with database.errors("write into"):
                database.upsert(rows[part], sparse[part], np.ascontiguousarray(dense[part], dtype=np.float32))
            written += len(rows[part])
    with database.errors("finish"):
        database.finish()
    if written != len(database.docids):
        raise InputError(f"{database.uri}: wrote {written} documents for {len(database.docids)} ids; the index is "
                         "incomplete, index again")
    if collapsed:
        log.warning("%s: %d of %d documents have no sparse term (the model gave them none); %s", database.uri,
                    collapsed, written, database.collapsed_note)
    return {"documents": written, "collapsed_sparse": collapsed}


def corpus_batches(corpus, size: int) -> Iterator[tuple[np.ndarray, sp.csr_matrix, np.ndarray]]:
    """An in-memory CorpusIndex's documents (its forward sparse index and dense vectors), `size` at a
    time: for writing an index into a database without encoding again."""
    if set(corpus.heads) != {SPARSE, DENSE}:
        raise InputError(f"a vector database holds hybrid indexes (sparse and dense); this one has {list(corpus.heads)}")
    docs, dense = corpus.indexes[SPARSE].by_doc, corpus.indexes[DENSE].vectors
    for start in range(0, docs.shape[0], size):
        stop = min(start + size, docs.shape[0])
        yield np.arange(start, stop), docs[start:stop], np.asarray(dense[start:stop], dtype=np.float32)
