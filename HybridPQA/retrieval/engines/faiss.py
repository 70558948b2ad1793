"""FAISS inner-product engines over a DenseIndex's vectors: flat (exact), HNSW, HNSW over 8-bit
scalar-quantised codes (re-scored exactly from the stored vectors) and IVF-PQ, one class each; what
they share (threads, saving, loading, searching) is `FaissEngine`."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from HybridPQA.errors import InputError
from HybridPQA.retrieval.index import DenseIndex
from HybridPQA.retrieval.kernels import top_k


class FaissEngine:
    """A FAISS index built by `make(faiss, vectors, settings)`; `NAME` its INDEX.DENSE choice."""

    NAME, BUILD, approximate = "faiss", (), False

    def __init__(self, index: DenseIndex, settings, saved: Path | None = None):
        try:
            import faiss
        except ImportError:
            raise InputError(f"RETRIEVER.INDEX.DENSE = {self.NAME!r} needs faiss-cpu: pip install faiss-cpu") from None
        faiss.omp_set_num_threads(torch.get_num_threads())
        self.dense = index
        started = time.perf_counter()
        if saved is not None:
            self.index = faiss.read_index(str(saved / "faiss.index"))
        else:
            self.index = self.make(faiss, np.ascontiguousarray(index.vectors, dtype=np.float32), settings)
        self.configure(settings)
        self.build_seconds = time.perf_counter() - started
        self.nbytes = int(faiss.serialize_index(self.index).nbytes)

    def make(self, faiss, vectors: np.ndarray, settings):
        built = faiss.IndexFlatIP(vectors.shape[1])
        built.add(vectors)
        return built

    def configure(self, settings) -> None:
        """Search-time parameters (not part of what is built)."""

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(folder / "faiss.index"))

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        values, rows = self.index.search(np.ascontiguousarray(queries.float().numpy()), k)
        return rows.astype(np.int64), values


class FlatEngine(FaissEngine):
    """IndexFlatIP: exact."""


class HnswEngine(FaissEngine):
    """IndexHNSWFlat: a graph of M links per vector, built with a beam of EF_CONSTRUCTION."""

    NAME, BUILD, approximate = "hnsw", ("m", "ef_construction"), True

    def make(self, faiss, vectors: np.ndarray, settings):
        built = faiss.IndexHNSWFlat(vectors.shape[1], int(settings.hnsw["m"]), faiss.METRIC_INNER_PRODUCT)
        built.hnsw.efConstruction = int(settings.hnsw["ef_construction"])
        built.add(vectors)
        return built

    def configure(self, settings) -> None:
        self.ef_search = int(settings.hnsw.get("ef_search", 0))

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.hnsw.efSearch = max(self.ef_search, k)  # a beam at least as wide as the depth asked for
        return super().search(queries, k)


class HnswSqEngine(HnswEngine):
    """IndexHNSWSQ: the HNSW graph over 8-bit scalar-quantised codes (a quarter of the vectors' bytes,
    faster distances), each hit then re-scored exactly from the stored float vectors and re-ranked."""

    NAME = "hnsw-sq8"

    def make(self, faiss, vectors: np.ndarray, settings):
        built = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, int(settings.hnsw["m"]),
                                  faiss.METRIC_INNER_PRODUCT)
        built.hnsw.efConstruction = int(settings.hnsw["ef_construction"])
        built.train(vectors)
        built.add(vectors)
        return built

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows, _ = super().search(queries, k)
        scores = np.where(rows >= 0, self.dense.candidate_scores(queries, rows), -np.inf).astype(np.float32)
        order, values = top_k(scores, k)
        return np.take_along_axis(rows, order, 1), values


class IvfPqEngine(FaissEngine):
    """IndexIVFPQ: NLIST lists (0: 4 sqrt(N)), product-quantised codes of PQ_M parts of PQ_BITS."""

    NAME, BUILD, approximate = "ivf-pq", ("nlist", "pq_m", "pq_bits"), True

    def make(self, faiss, vectors: np.ndarray, settings):
        ivf, (n, dim) = settings.ivf, vectors.shape
        nlist = int(ivf["nlist"]) or max(1, int(4 * np.sqrt(n)))
        if dim % int(ivf["pq_m"]):
            raise InputError(f"config: RETRIEVER.INDEX.IVF.PQ_M = {ivf['pq_m']} must divide the dense dimension {dim}")
        if n < max(nlist, 2 ** int(ivf["pq_bits"])):
            raise InputError(f"config: RETRIEVER.INDEX.DENSE = 'ivf-pq': {n} documents are too few to train {nlist} "
                             f"lists and {2 ** int(ivf['pq_bits'])} PQ centroids; use 'hnsw' or 'faiss'")
        built = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, int(ivf["pq_m"]), int(ivf["pq_bits"]),
                                 faiss.METRIC_INNER_PRODUCT)
        built.train(vectors)
        built.add(vectors)
        return built

    def configure(self, settings) -> None:
        self.index.nprobe = int(settings.ivf["nprobe"])
