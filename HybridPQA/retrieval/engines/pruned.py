"""Document-side pruning at indexing time: the numba inverted index (retrieval.index) over each
document's DOC_TERMS largest weights only, so posting lists hold a document's main terms and not the
long tail of small expansions; the hits it finds are re-scored exactly from the full stored vectors.
With query-term pruning (INDEX.QUERY_TERMS) a query touches a few short lists."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from HybridPQA.retrieval.index import SparseIndex
from HybridPQA.retrieval.kernels import keep_largest, top_k


class PrunedEngine:
    """The inverted index of each document's DOC_TERMS largest weights; hits re-scored exactly."""

    approximate = True
    BUILD = ("doc_terms",)

    def __init__(self, index: SparseIndex, settings, saved: Path | None = None):
        started = time.perf_counter()
        self.full = index
        self.index = SparseIndex.load(saved) if saved is not None else \
            SparseIndex.build(keep_largest(index.by_doc, int(settings.pruned["doc_terms"])), index.docids)
        self.build_seconds = time.perf_counter() - started
        self.nbytes = self.index.nbytes

    def save(self, folder: Path) -> None:
        self.index.save(folder)

    def search(self, queries: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows, _ = self.index.search(queries, k)
        scores = np.where(rows >= 0, self.full.candidate_scores(queries, rows), -np.inf).astype(np.float32)
        order, values = top_k(scores, k)
        return np.take_along_axis(rows, order, 1), values
