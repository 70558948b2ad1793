"""Corpus indexes with exact search: an inverted index for sparse vectors, flat dense vectors.

Both give the score of *every* document for a batch of queries (`scores`), so any fusion of
the two can be computed over the whole corpus before the top-k is taken: hybrid retrieval is
exact at every depth. `search` is the top-k of one index alone.

The sparse index is the corpus matrix stored by term (CSC of the N x V document matrix:
per term, its posting list of documents and impacts). A query touches only the posting
lists of its own terms, accumulated term at a time by a numba kernel, queries in parallel.
scripts/bench_retrieval.py chose it by measurement: on SciFact (5,183 documents) one query
takes 0.14 ms against 0.38 ms for scipy's CSR x CSC product and 21 ms for brute force.
Saved as three .npy files and memory-mapped on load.

`candidate_scores` gives the exact scores of given documents only (from the forward index, documents
by row, and the dense rows), for the candidate hybrid (retrieval.corpus) whose cost must not
grow with the corpus.
"""
from __future__ import annotations

import json
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp
import torch

from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.errors import InputError


PARALLEL_QUERIES = 4  # fewer queries than this run on the calling thread: waking the pool costs more than it gives


@numba.njit(cache=True, parallel=True)
def _term_at_a_time(q_indptr, q_terms, q_weights, indptr, doc_rows, doc_weights, num_docs):
    out = np.zeros((len(q_indptr) - 1, num_docs), dtype=np.float32)
    for i in numba.prange(len(q_indptr) - 1):
        for j in range(q_indptr[i], q_indptr[i + 1]):
            t, w = q_terms[j], q_weights[j]
            for p in range(indptr[t], indptr[t + 1]):
                out[i, doc_rows[p]] += w * doc_weights[p]
    return out


@numba.njit(cache=True)
def _candidate_row(i, q_indptr, q_terms, q_weights, rows, indptr, terms, weights, vocab, out):
    dense_q = np.zeros(vocab, dtype=np.float32)
    for j in range(q_indptr[i], q_indptr[i + 1]):
        dense_q[q_terms[j]] = q_weights[j]
    for c in range(rows.shape[1]):
        r = rows[i, c]
        if r >= 0:
            acc = np.float32(0.0)
            for p in range(indptr[r], indptr[r + 1]):
                acc += dense_q[terms[p]] * weights[p]
            out[i, c] = acc


@numba.njit(cache=True, parallel=True)
def _candidate_dots(q_indptr, q_terms, q_weights, rows, indptr, terms, weights, vocab):
    out = np.zeros(rows.shape, dtype=np.float32)
    for i in numba.prange(rows.shape[0]):
        _candidate_row(i, q_indptr, q_terms, q_weights, rows, indptr, terms, weights, vocab, out)
    return out


@numba.njit(cache=True)
def _candidate_dots_serial(q_indptr, q_terms, q_weights, rows, indptr, terms, weights, vocab):
    """`_candidate_dots` on this thread: a few queries (one served search) do not wake the thread pool."""
    out = np.zeros(rows.shape, dtype=np.float32)
    for i in range(rows.shape[0]):
        _candidate_row(i, q_indptr, q_terms, q_weights, rows, indptr, terms, weights, vocab, out)
    return out


@numba.njit(cache=True)
def _beats(score, row, other_score, other_row):
    """(score, row) ranks above (other_score, other_row): a higher score, or the same and a lower row."""
    return score > other_score or (score == other_score and row < other_row)


@numba.njit(cache=True)
def _sift_down(heap_scores, heap_rows, size):
    """Restore the min-heap (least-ranked entry at 0) after entry 0 was replaced."""
    i = 0
    while True:
        left, least = 2 * i + 1, i
        for child in (left, left + 1):
            if child < size and not _beats(heap_scores[child], heap_rows[child], heap_scores[least], heap_rows[least]):
                least = child
        if least == i:
            return
        heap_scores[i], heap_scores[least] = heap_scores[least], heap_scores[i]
        heap_rows[i], heap_rows[least] = heap_rows[least], heap_rows[i]
        i = least


@numba.njit(cache=True)
def _push(score, row, heap_scores, heap_rows, size, k):
    """Offer (score, row) to a min-heap of the best k -> its new size."""
    if size < k:
        i = size
        heap_scores[i], heap_rows[i] = score, row
        while i > 0:  # sift up while the parent ranks above
            parent = (i - 1) // 2
            if _beats(heap_scores[parent], heap_rows[parent], heap_scores[i], heap_rows[i]):
                heap_scores[i], heap_scores[parent] = heap_scores[parent], heap_scores[i]
                heap_rows[i], heap_rows[parent] = heap_rows[parent], heap_rows[i]
                i = parent
            else:
                break
        return size + 1
    if _beats(score, row, heap_scores[0], heap_rows[0]):
        heap_scores[0], heap_rows[0] = score, row
        _sift_down(heap_scores, heap_rows, size)
    return size


@numba.njit(cache=True)
def _group_top_k(g, q_indptr, q_terms, q_weights, indptr, doc_rows, doc_weights, k, acc, seen, touched_rows,
                 rows, values):
    """The queries g, g + G, ... of `_top_k_postings`, in group g's buffers."""
    groups, n, touched = acc.shape[0], acc.shape[1], touched_rows[g]
    for i in range(g, len(q_indptr) - 1, groups):
        count = 0
        for j in range(q_indptr[i], q_indptr[i + 1]):
            t, w = q_terms[j], q_weights[j]
            for p in range(indptr[t], indptr[t + 1]):
                d = doc_rows[p]
                if not seen[g, d]:
                    seen[g, d] = 1
                    touched[count] = d
                    count += 1
                acc[g, d] += w * doc_weights[p]
        heap_scores, heap_rows, size = np.empty(k, np.float32), np.empty(k, np.int64), 0
        for c in range(count):
            d = touched[c]
            size = _push(acc[g, d], d, heap_scores, heap_rows, size, k)
            acc[g, d], seen[g, d] = 0.0, 0
        row = 0
        while size < k and row < n:  # as a full top-k: untouched documents score 0
            if not _seen_before(touched, count, row):
                size = _push(np.float32(0.0), row, heap_scores, heap_rows, size, k)
            row += 1
        rows[i, :size], values[i, :size] = heap_rows[:size], heap_scores[:size]


@numba.njit(cache=True, parallel=True)
def _top_k_postings(q_indptr, q_terms, q_weights, indptr, doc_rows, doc_weights, k, acc, seen, touched_rows):
    """Each query's top k (score desc, then row asc) over the documents its posting lists touch:
    accumulated into a per-group buffer (`acc`, `seen`: (G, N), all zero, left zero; `touched_rows`:
    (G, N) scratch), then a heap; fewer than k touched: filled with untouched documents (score 0) by
    lower row, as a full top-k. Groups run in parallel."""
    queries = len(q_indptr) - 1
    rows, values = np.full((queries, k), -1, np.int64), np.full((queries, k), -np.inf, np.float32)
    for g in numba.prange(acc.shape[0]):
        _group_top_k(g, q_indptr, q_terms, q_weights, indptr, doc_rows, doc_weights, k, acc, seen, touched_rows,
                     rows, values)
    return rows, values


@numba.njit(cache=True)
def _top_k_postings_serial(q_indptr, q_terms, q_weights, indptr, doc_rows, doc_weights, k, acc, seen, touched_rows):
    """`_top_k_postings` with one group, on this thread."""
    queries = len(q_indptr) - 1
    rows, values = np.full((queries, k), -1, np.int64), np.full((queries, k), -np.inf, np.float32)
    _group_top_k(0, q_indptr, q_terms, q_weights, indptr, doc_rows, doc_weights, k, acc, seen, touched_rows,
                 rows, values)
    return rows, values


@numba.njit(cache=True)
def _seen_before(touched, count, row):
    for c in range(count):
        if touched[c] == row:
            return True
    return False


def as_csr(matrix) -> sp.csr_matrix:
    """`matrix` as float32 CSR, itself where it already is one (no copy, no format check per search)."""
    if isinstance(matrix, sp.csr_matrix) and matrix.dtype == np.float32:
        return matrix
    return sp.csr_matrix(matrix, dtype=np.float32)


def keep_largest(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Each row's `keep` largest weights (0 or more than a row has: the row)."""
    m = as_csr(matrix)
    lengths = np.diff(m.indptr)
    if not keep or lengths.max(initial=0) <= keep:
        return m
    row_of = np.repeat(np.arange(m.shape[0]), lengths)
    order = np.lexsort((-m.data, row_of))  # by row, then weight descending
    rank = np.empty(m.nnz, dtype=np.int64)
    rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
    kept = rank < keep
    indptr = np.r_[0, np.cumsum(np.bincount(row_of[kept], minlength=m.shape[0]))]
    return sp.csr_matrix((m.data[kept], m.indices[kept], indptr), shape=m.shape)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, N) scores -> (Q, k) column indices and scores, best first; ties by lower column."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    part_scores = np.take_along_axis(scores, part, 1)
    order = np.lexsort((part, -part_scores), axis=1)
    index = np.take_along_axis(part, order, 1)
    return index, np.take_along_axis(scores, index, 1)


def sparse_dots(queries: sp.csr_matrix, docs: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """(Q, V) queries, (N, V) documents by row, (Q, C) rows of them (-1: none) -> (Q, C) dot products
    (0 at -1); the cost is the listed documents' lengths."""
    q, d = as_csr(queries), as_csr(docs)
    kernel = _candidate_dots if q.shape[0] >= PARALLEL_QUERIES else _candidate_dots_serial
    return kernel(q.indptr, q.indices, q.data, np.asarray(rows, dtype=np.int64), d.indptr, d.indices,
                           d.data, q.shape[1])


def dense_dots(queries, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(Q, D) queries (tensor or array), (N, D) vectors, (Q, C) rows of them (-1: none) -> (Q, C) inner
    products (0 at -1)."""
    q = queries.float().numpy() if isinstance(queries, torch.Tensor) else np.asarray(queries, dtype=np.float32)
    docs = np.asarray(vectors)[np.maximum(rows, 0)]  # (Q, C, D)
    return np.where(rows >= 0, np.einsum("qcd,qd->qc", docs, q), 0.0).astype(np.float32)


def _save_arrays(path: Path, meta: dict, **arrays: np.ndarray) -> None:
    """The arrays, then meta.json with each array's length. Callers write a whole index into a fresh
    directory and publish it with one rename (`files.publish_dir`), so arrays never mix."""
    path.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", array)
    meta = {**meta, "lengths": {name: int(len(array)) for name, array in arrays.items()}}
    (path / "meta.json").write_text(json.dumps(meta, indent=2))


def _load_array(path: Path, name: str, meta: dict, mmap: bool) -> np.ndarray:
    """One array of an index, checked against the length meta.json recorded for it."""
    file = Path(path) / f"{name}.npy"
    try:
        # copy-on-write: pages are read from disk on use, never written back, and torch may wrap them
        array = np.load(file, mmap_mode="c" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"{file}: unreadable index array ({str(err).splitlines()[0][:100] if str(err) else err.__class__.__name__}); "
                         "rebuild the index with `hybridpqa evaluate`") from None
    expected = (meta.get("lengths") or {}).get(name)
    if expected is not None and len(array) != expected:
        raise InputError(f"{file}: {len(array)} entries where meta.json says {expected}; the index is damaged, "
                         "rebuild it with `hybridpqa evaluate`")
    return array


def _load_meta(path: Path, kind: str) -> dict:
    meta_path = Path(path) / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"{path}: no index here (meta.json missing); `hybridpqa evaluate` writes one per corpus split "
                         "to <run>/index/<split>/{sparse,dense} (RETRIEVER.INDEX.SAVE True)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{meta_path}: unreadable index metadata ({err.__class__.__name__}); rebuild the index") from None
    if isinstance(meta, dict) and meta.get("kind") != kind:
        raise InputError(f"{meta_path}: a {meta.get('kind')!r} index, not {kind!r}")
    if not isinstance(meta, dict) or not isinstance(meta.get("docids"), list) or not isinstance(meta.get("shape"), list):
        raise InputError(f"{meta_path}: not a HybridPQA index description; rebuild the index")
    return meta


class SparseIndex:
    """Inverted index over an (N, V) document matrix; `docids[i]` names row i."""

    def __init__(self, by_term: sp.csc_matrix, docids: list[str], terms: list[str] | None = None):
        self.by_term, self.docids, self.terms = by_term, docids, terms  # terms[v]: the vocabulary entry
        self._by_doc: sp.csr_matrix | None = None
        self._buffers, self._positive = None, None  # search's zeroed accumulators, per thread; weights >= 0

    @classmethod
    def build(cls, docs: sp.csr_matrix, docids: list[str], terms: list[str] | None = None) -> SparseIndex:
        if docs.shape[0] != len(docids):
            raise ValueError(f"{docs.shape[0]} vectors for {len(docids)} docids")
        by_term = sp.csc_matrix(docs, dtype=np.float32)
        by_term.sort_indices()
        index = cls(by_term, docids, terms)
        if sp.isspmatrix_csr(docs) and docs.dtype == np.float32:
            docs.sort_indices()
            index._by_doc = docs  # the forward index is the matrix given
        return index

    @property
    def nbytes(self) -> int:
        m = self.by_term
        return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)

    def scores(self, queries: sp.csr_matrix) -> np.ndarray:
        """(Q, V) query vectors -> (Q, N) exact dot products with every document."""
        q, m = as_csr(queries), self.by_term
        return _term_at_a_time(q.indptr, q.indices, q.data, np.asarray(m.indptr), np.asarray(m.indices),
                               np.asarray(m.data), m.shape[0])

    def search(self, queries: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's top k, best first (ties by lower row), as `top_k` of `scores` gives it; with
        non-negative weights (SPLADE's) from the documents its posting lists touch alone (a compiled
        accumulate-and-heap: no (Q, N) scores, no corpus-wide selection)."""
        q, m = as_csr(queries), self.by_term
        k = min(k, m.shape[0])
        if q.data.min(initial=0.0) < 0 or not self._non_negative():
            return top_k(self.scores(q), k)
        groups = max(1, min(q.shape[0] // PARALLEL_QUERIES, numba.get_num_threads()))
        if self._buffers is None or self._buffers[0].shape[0] < groups:
            n = m.shape[0]
            self._buffers = (np.zeros((groups, n), np.float32), np.zeros((groups, n), np.uint8),
                             np.empty((groups, n), np.int32))
        kernel = _top_k_postings if groups > 1 else _top_k_postings_serial
        rows, values = kernel(q.indptr, q.indices, q.data, np.asarray(m.indptr), np.asarray(m.indices),
                                       np.asarray(m.data), k, *(b[:groups] for b in self._buffers))
        order = np.lexsort((rows, -values), axis=1)
        return np.take_along_axis(rows, order, 1), np.take_along_axis(values, order, 1)

    def _non_negative(self) -> bool:
        if self._positive is None:
            self._positive = bool(np.asarray(self.by_term.data).min(initial=0.0) >= 0)
        return self._positive

    def reps(self) -> sp.csr_matrix:
        """The documents' stored vectors (heads.HEADS), as encoding gives them."""
        return self.by_doc

    @property
    def by_doc(self) -> sp.csr_matrix:
        """The forward index (documents by row), built on first use."""
        if self._by_doc is None:
            self._by_doc = self.by_term.tocsr()
        return self._by_doc

    def candidate_scores(self, queries: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        """(Q, V) queries, (Q, C) document rows (-1: none) -> (Q, C) exact dot products (0 at -1),
        from the forward index: the cost is the candidates' lengths, not the corpus's."""
        return sparse_dots(queries, self.by_doc, rows)

    def save(self, path: Path) -> None:
        m = self.by_term
        _save_arrays(Path(path), {"kind": SPARSE, "shape": list(m.shape), "nnz": int(m.nnz), "docids": self.docids},
                     data=m.data, indices=m.indices, indptr=m.indptr)
        if self.terms is not None:
            (Path(path) / "terms.json").write_text(json.dumps(self.terms))

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> SparseIndex:
        meta = _load_meta(path, SPARSE)
        arrays = [_load_array(path, n, meta, mmap) for n in ("data", "indices", "indptr")]
        terms = Path(path) / "terms.json"
        try:
            matrix = sp.csc_matrix(tuple(arrays), shape=tuple(meta["shape"]), copy=False)
            vocab = json.loads(terms.read_text(encoding="utf-8")) if terms.is_file() else None
        except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: the index files disagree ({str(err)[:100]}); rebuild the index") from None
        if matrix.shape[0] != len(meta["docids"]) or vocab is not None and len(vocab) != matrix.shape[1]:
            raise InputError(f"{path}: {matrix.shape[0]} rows for {len(meta['docids'])} docids, or a vocabulary of "
                             f"another size; the index is damaged, rebuild it")
        return cls(matrix, meta["docids"], vocab)


def save_queries(path: Path, qids: list[str], queries: sp.csr_matrix) -> None:
    """A split's sparse query vectors beside its index (for export and offline search)."""
    sp.save_npz(Path(path) / "queries.npz", queries.tocsr())
    (Path(path) / "queries.json").write_text(json.dumps(qids))


def load_queries(path: Path) -> tuple[list[str], sp.csr_matrix] | None:
    if not (Path(path) / "queries.npz").is_file():
        return None
    return json.loads((Path(path) / "queries.json").read_text()), sp.load_npz(Path(path) / "queries.npz").tocsr()


class DenseIndex:
    """Flat (N, D) float32 vectors; exact inner products by torch matmul. FAISS indexes over the
    same vectors are engines (retrieval.engines)."""

    def __init__(self, vectors: np.ndarray, docids: list[str]):
        self.vectors, self.docids = vectors, docids

    @classmethod
    def build(cls, docs: torch.Tensor, docids: list[str], terms: list[str] | None = None) -> DenseIndex:
        return cls(docs.float().numpy(), docids)

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes)

    def reps(self) -> torch.Tensor:
        """The documents' stored vectors (heads.HEADS), as encoding gives them."""
        return torch.from_numpy(np.asarray(self.vectors, dtype=np.float32))

    def scores(self, queries: torch.Tensor) -> np.ndarray:
        """(Q, D) -> (Q, N) exact inner products with every document."""
        return (queries.float() @ torch.from_numpy(np.asarray(self.vectors)).T).numpy()

    def candidate_scores(self, queries: torch.Tensor, rows: np.ndarray) -> np.ndarray:
        """(Q, D) queries, (Q, C) document rows (-1: none) -> (Q, C) exact inner products (0 at -1)."""
        return dense_dots(queries, self.vectors, rows)

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k(self.scores(queries), k)

    def save(self, path: Path) -> None:
        _save_arrays(Path(path), {"kind": DENSE, "shape": list(self.vectors.shape), "docids": self.docids},
                     vectors=np.asarray(self.vectors))

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> DenseIndex:
        meta = _load_meta(path, DENSE)
        vectors = _load_array(path, "vectors", meta, mmap)
        if vectors.ndim != 2 or len(vectors) != len(meta["docids"]):
            raise InputError(f"{path}: {len(vectors)} vectors for {len(meta['docids'])} docids; rebuild the index")
        return cls(vectors, meta["docids"])
