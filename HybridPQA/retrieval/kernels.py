"""The compiled kernels of the in-process indexes (numba): every document's sparse score, a query's
top-k from its posting lists alone (accumulate the documents they touch, keep the best k in a heap),
exact scores of given candidates, and the top-k and pruning helpers the engines share. A few
queries (one served search) run on the calling thread; many run in parallel."""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
import torch

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


def every_score(queries: sp.csr_matrix, by_term: sp.csc_matrix) -> np.ndarray:
    """(Q, V) queries, the (N, V) corpus by term -> (Q, N) exact dot products with every document."""
    q, m = as_csr(queries), by_term
    return _term_at_a_time(q.indptr, q.indices, q.data, np.asarray(m.indptr), np.asarray(m.indices),
                           np.asarray(m.data), m.shape[0])


def postings_top_k(queries: sp.csr_matrix, by_term: sp.csc_matrix, k: int, buffers: list) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top k, best first (ties by lower row), from the documents its posting lists touch
    (weights >= 0). `buffers`: a one-item list holding the zeroed accumulators, made on first use and
    reused (a caller's, one per index)."""
    q, m = as_csr(queries), by_term
    groups = max(1, min(q.shape[0] // PARALLEL_QUERIES, numba.get_num_threads()))
    if not buffers or buffers[0][0].shape[0] < groups:
        n = m.shape[0]
        buffers[:] = [(np.zeros((groups, n), np.float32), np.zeros((groups, n), np.uint8), np.empty((groups, n), np.int32))]
    kernel = _top_k_postings if groups > 1 else _top_k_postings_serial
    rows, values = kernel(q.indptr, q.indices, q.data, np.asarray(m.indptr), np.asarray(m.indices), np.asarray(m.data),
                          k, *(b[:groups] for b in buffers[0]))
    order = np.lexsort((rows, -values), axis=1)
    return np.take_along_axis(rows, order, 1), np.take_along_axis(values, order, 1)
