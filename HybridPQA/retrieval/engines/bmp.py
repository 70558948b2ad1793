"""Block-Max Pruning (`bmp` on PyPI, pisa-engine/BMP; Mallia, Suel & Tonellotto, SIGIR 2024) over the
rows of a SparseIndex: documents in blocks of BSIZE rows, each term's maximum impact per block kept,
blocks visited best bound first and the search stopped when no block left can beat THRESHOLD times
the k-th best score (BMP's alpha); QUERY_SHARE (its beta) keeps the query terms that hold that share
of the query's weight.

BMP stores integer impacts: each weight is scaled so the corpus's largest becomes 255 and rounded
(at least 1), the scale kept with the engine. It only has to find candidates: the candidate
hybrid re-scores them exactly from the stored vectors, and a sparse run alone is re-scored here.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from HybridPQA.errors import InputError
from HybridPQA.retrieval.index import SparseIndex
from HybridPQA.retrieval.kernels import top_k

LEVELS = 255  # the largest integer impact
BUILD_ROWS = 20_000


class BmpEngine:
    """BMP over the rows of a SparseIndex: doc ids are row numbers, term ids vocabulary ids."""

    approximate = True
    BUILD = ("bsize", "compress_range")

    def __init__(self, index: SparseIndex, settings, saved: Path | None = None):
        try:
            import bmp
        except ImportError:
            raise InputError("RETRIEVER.INDEX.SPARSE = 'bmp' needs bmp: pip install bmp") from None
        params, self.sparse = settings.bmp, index
        self.configure(settings)
        started = time.perf_counter()
        self._own = None if saved is not None else Path(tempfile.mkdtemp(prefix="hybridpqa-bmp-"))
        folder = saved if saved is not None else self._own
        if saved is None:
            self.scale = _build(bmp, index.by_doc, folder / "index.bmp", int(params["bsize"]),
                                bool(params["compress_range"]))
            (folder / "scale.json").write_text(json.dumps({"scale": self.scale}))
        else:
            self.scale = float(json.loads((folder / "scale.json").read_text(encoding="utf-8"))["scale"])
        self.searcher = bmp.Searcher(str(folder / "index.bmp"))
        self.build_seconds = time.perf_counter() - started
        self.nbytes = (folder / "index.bmp").stat().st_size

    def configure(self, settings) -> None:
        """Search-time parameters (not part of what is built)."""
        self.alpha, self.beta = float(settings.bmp["threshold"]), float(settings.bmp["query_share"])

    def save(self, folder: Path) -> None:
        for name in ("index.bmp", "scale.json"):
            shutil.copyfile(self._own / name, folder / name)

    def __del__(self):
        if getattr(self, "_own", None) is not None:
            shutil.rmtree(self._own, ignore_errors=True)

    def search(self, queries: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's top k found by BMP, re-scored exactly (its integer scores only rank blocks)."""
        q = sp.csr_matrix(queries, dtype=np.float32)
        rows = np.full((q.shape[0], k), -1, dtype=np.int64)
        for i in range(q.shape[0]):
            span = slice(q.indptr[i], q.indptr[i + 1])
            terms = {str(t): float(w) for t, w in zip(q.indices[span], q.data[span]) if w > 0}
            if terms:
                found, _ = self.searcher.search(terms, k=k, alpha=self.alpha, beta=self.beta)
                rows[i, :len(found)] = np.asarray(found, dtype=np.int64)[:k]
        scores = np.where(rows >= 0, self.sparse.candidate_scores(q, rows), -np.inf).astype(np.float32)
        order, values = top_k(scores, k)
        return np.take_along_axis(rows, order, 1), values


def _build(bmp, docs: sp.csr_matrix, path: Path, bsize: int, compress_range: bool) -> float:
    """Write BMP's index of `docs` (rows in order) to `path` -> the weight scale used."""
    docs = sp.csr_matrix(docs, dtype=np.float32)
    scale = LEVELS / max(float(docs.data.max(initial=0.0)), 1e-9)
    indexer = bmp.Indexer(str(path), bsize=bsize, compress_range=compress_range)
    for start in range(0, docs.shape[0], BUILD_ROWS):  # Python's dicts a block of rows at a time: bounded memory
        block = docs[start:start + BUILD_ROWS]
        impacts = np.clip(np.rint(block.data * scale), 1, LEVELS).astype(np.int64).tolist()
        terms, indptr = block.indices.astype(str).tolist(), block.indptr.tolist()
        for row in range(block.shape[0]):
            lo, hi = indptr[row], indptr[row + 1]
            indexer.add_document(str(start + row), dict(zip(terms[lo:hi], impacts[lo:hi])))
    indexer.finish()
    return scale
