"""The exact index itself as an engine (sparse "exact": the numba inverted index; dense "torch": a matmul)."""
from __future__ import annotations

import numpy as np


class ExactEngine:
    """The exact index itself: top-k of every document's score."""

    approximate = False

    def __init__(self, index, settings=None, saved=None):
        self.index, self.build_seconds, self.nbytes = index, 0.0, index.nbytes

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)
