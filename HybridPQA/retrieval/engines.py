"""Top-k engines over a corpus index's documents, exact or approximate, chosen in the config.

- sparse: "exact" (the numba inverted index, retrieval.index) or "seismic" (pyseismic-lsr,
  TusKANNy/seismic: posting lists pruned to N_POSTINGS, split into blocks with summary vectors,
  a block skipped when its summary cannot beat HEAP_FACTOR times the k-th best score);
- dense: "torch" (exact matmul), "faiss" (exact IndexFlatIP), "hnsw" (IndexHNSWFlat) or
  "ivf-pq" (IndexIVFPQ), all inner product.

An engine is built from an exact index's own arrays and answers `search(queries, k)` with (Q, k)
row numbers (-1 where it found fewer) and their scores. It only has to *find* documents: hybrid
retrieval re-scores every candidate exactly from the stored vectors (retrieval.corpus).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from HybridPQA.heads import SPARSE
from HybridPQA.errors import InputError
from HybridPQA.retrieval.index import DenseIndex, SparseIndex

log = logging.getLogger(__name__)
EXACT_ENGINES = ("exact", "torch", "faiss")


@dataclass(frozen=True)
class EngineSettings:
    """Which engine serves each head, its parameters, and how the hybrid is retrieved.

    hybrid "exact": fuse every document's two scores; "candidates": each head's top `candidates`
    (k') documents, their union re-scored exactly by both heads and fused, a linear fusion's
    normalisation statistics taken from the exact scores of `norm_sample` random documents
    (z-score: their mean and std; min-max: their min and the candidates' max), or with 0 from the
    union itself."""

    sparse: str = "exact"
    dense: str = "torch"
    hybrid: str = "exact"
    candidates: int = 200
    norm_sample: int = 1000  # documents whose scores give the candidate hybrid's normalisation statistics
    seismic: dict = field(default_factory=dict)  # n_postings, centroid_fraction, ..., query_cut, heap_factor
    hnsw: dict = field(default_factory=dict)  # m, ef_construction, ef_search
    ivf: dict = field(default_factory=dict)  # nlist (0: 4 sqrt(N)), nprobe, pq_m, pq_bits

    def engine(self, head: str) -> str:
        return self.sparse if head == SPARSE else self.dense

    @property
    def exact(self) -> bool:
        """Every run comes from every document's exact scores (no engine is asked for a top-k)."""
        return self.hybrid == "exact" and self.sparse == "exact" and self.dense == "torch"

    def describe(self, head: str) -> str:
        name = self.engine(head)
        params = {"seismic": self.seismic, "hnsw": self.hnsw, "ivf-pq": self.ivf}.get(name, {})
        return name + "".join(f" {k}={v}" for k, v in params.items())


def build_engine_settings(cfg) -> EngineSettings:
    """RETRIEVER.INDEX."""
    ix = cfg.RETRIEVER.INDEX
    lower = lambda node: {k.lower(): v for k, v in node.items()}  # noqa: E731
    return EngineSettings(ix.SPARSE, ix.DENSE, ix.HYBRID, int(ix.CANDIDATES), int(ix.NORM_SAMPLE), lower(ix.SEISMIC),
                          lower(ix.HNSW), lower(ix.IVF))


class ExactEngine:
    """The exact index itself: top-k of every document's score."""

    approximate = False

    def __init__(self, index: SparseIndex | DenseIndex):
        self.index, self.build_seconds, self.nbytes = index, 0.0, index.nbytes

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)


class SeismicEngine:
    """Seismic over the rows of a SparseIndex: component ids are vocabulary ids, doc ids row numbers."""

    approximate = True
    BUILD = ("n_postings", "centroid_fraction", "min_cluster_size", "summary_energy", "max_fraction", "doc_cut")

    def __init__(self, index: SparseIndex, params: dict):
        try:
            from seismic import SeismicDataset, SeismicIndex, get_seismic_string
        except ImportError:
            raise InputError("RETRIEVER.INDEX.SPARSE = 'seismic' needs pyseismic-lsr: pip install pyseismic-lsr") from None
        self.query_cut, self.heap_factor = int(params["query_cut"]), float(params["heap_factor"])
        self.text_dtype = get_seismic_string()
        started = time.perf_counter()
        docs = index.by_doc
        docs.sort_indices()
        dataset = SeismicDataset(dim=docs.shape[1])
        dataset.add_documents_by_id([str(i) for i in range(docs.shape[0])], docs.indices.astype(np.int64),
                                    docs.data.astype(np.float32), docs.indptr.astype(np.int64))
        build = {k: params[k] for k in self.BUILD if k in params}
        with _stdout_to(sys.stderr.fileno()):  # Seismic prints its progress on stdout, where runs may go
            self.index = SeismicIndex.build_from_dataset(dataset, num_threads=torch.get_num_threads(), **build)
        self.build_seconds = time.perf_counter() - started
        self.nbytes = _seismic_bytes(self.index)

    def search(self, queries: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = sp.csr_matrix(queries, dtype=np.float32)
        spans = [slice(q.indptr[i], q.indptr[i + 1]) for i in range(q.shape[0])]
        text = self.text_dtype  # Seismic takes ids and components as strings of its own dtype
        results = self.index.batch_search(np.arange(q.shape[0]).astype(text),
                                          [q.indices[s].astype(text) for s in spans], [q.data[s] for s in spans],
                                          k, self.query_cut, self.heap_factor, num_threads=torch.get_num_threads())
        rows, values = np.full((q.shape[0], k), -1, dtype=np.int64), np.full((q.shape[0], k), -np.inf, np.float32)
        for hits in results:  # in the order the threads finished: each hit names its query
            for j, (qid, score, doc) in enumerate(hits[:k]):
                rows[int(qid), j], values[int(qid), j] = int(doc), score
        return rows, values


@contextmanager
def _stdout_to(fd: int):
    """Send what native code writes on file descriptor 1 to `fd` for a while."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(fd, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _seismic_bytes(index) -> int:
    """The index's own count of its bytes (it only prints it: read from the process's stdout)."""
    with tempfile.TemporaryFile(mode="w+b") as capture:
        with _stdout_to(capture.fileno()):
            index.print_space_usage_byte()
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    numbers = [int(n) for n in re.findall(r"(\d+)\s*[Bb]ytes", text)] or [int(n) for n in re.findall(r"\d{4,}", text)]
    return max(numbers, default=0)


class FaissEngine:
    """A FAISS inner-product index over a DenseIndex's vectors: flat (exact), HNSW or IVF-PQ."""

    def __init__(self, index: DenseIndex, kind: str, hnsw: dict, ivf: dict):
        try:
            import faiss
        except ImportError:
            raise InputError(f"RETRIEVER.INDEX.DENSE = {kind!r} needs faiss-cpu: pip install faiss-cpu") from None
        faiss.omp_set_num_threads(torch.get_num_threads())
        vectors = np.ascontiguousarray(index.vectors, dtype=np.float32)
        n, dim = vectors.shape
        started = time.perf_counter()
        self.approximate, self.ef_search = kind != "faiss", int(hnsw.get("ef_search", 0))
        if kind == "faiss":
            self.index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, int(hnsw["m"]), faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = int(hnsw["ef_construction"])
        else:
            nlist = int(ivf["nlist"]) or max(1, int(4 * np.sqrt(n)))
            if dim % int(ivf["pq_m"]):
                raise InputError(f"config: RETRIEVER.INDEX.IVF.PQ_M = {ivf['pq_m']} must divide the dense dimension {dim}")
            if n < max(nlist, 2 ** int(ivf["pq_bits"])):
                raise InputError(f"config: RETRIEVER.INDEX.DENSE = 'ivf-pq': {n} documents are too few to train {nlist} "
                                 f"lists and {2 ** int(ivf['pq_bits'])} PQ centroids; use 'hnsw' or 'faiss'")
            self.index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, int(ivf["pq_m"]), int(ivf["pq_bits"]),
                                          faiss.METRIC_INNER_PRODUCT)
            self.index.train(vectors)
            self.index.nprobe = int(ivf["nprobe"])
        self.index.add(vectors)
        self.build_seconds = time.perf_counter() - started
        self.nbytes = int(faiss.serialize_index(self.index).nbytes)

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(self.index, "hnsw"):  # HNSW needs a beam at least as wide as the depth asked for
            self.index.hnsw.efSearch = max(self.ef_search, k)
        values, rows = self.index.search(np.ascontiguousarray(queries.float().numpy()), k)
        return rows.astype(np.int64), values


def build_engine(head: str, index: SparseIndex | DenseIndex, settings: EngineSettings):
    """The engine `settings` chooses for `head` ("sparse" | "dense") over `index`, built now (timed)."""
    name = settings.engine(head)
    if name in ("exact", "torch"):
        return ExactEngine(index)
    engine = SeismicEngine(index, settings.seismic) if head == SPARSE else \
        FaissEngine(index, name, settings.hnsw, settings.ivf)
    log.info("%s index: %s over %d documents built in %.2f s (%.1f MB)", head, settings.describe(head),
             len(index.docids), engine.build_seconds, engine.nbytes / 2 ** 20)
    return engine
