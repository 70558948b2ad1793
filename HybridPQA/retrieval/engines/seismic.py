"""Seismic (pyseismic-lsr, TusKANNy/seismic) over the rows of a SparseIndex: posting lists pruned to
N_POSTINGS, split into blocks with summary vectors, a block skipped when its summary cannot beat
HEAP_FACTOR times the k-th best score."""
from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from HybridPQA.errors import InputError
from HybridPQA.retrieval.index import SparseIndex

log = logging.getLogger(__name__)


class SeismicEngine:
    """Seismic over the rows of a SparseIndex: component ids are vocabulary ids, doc ids row numbers."""

    approximate = True
    BUILD = ("n_postings", "centroid_fraction", "min_cluster_size", "summary_energy", "max_fraction", "doc_cut")

    def __init__(self, index: SparseIndex, settings, saved: Path | None = None):
        params = settings.seismic
        try:
            from seismic import SeismicDataset, SeismicIndex, get_seismic_string
        except ImportError:
            raise InputError("RETRIEVER.INDEX.SPARSE = 'seismic' needs pyseismic-lsr: pip install pyseismic-lsr") from None
        self.configure(settings)
        self.text_dtype = get_seismic_string()
        started = time.perf_counter()
        if saved is not None:
            with _native_output():
                self.index = SeismicIndex.load(str(saved / "seismic.index.seismic"))
        else:
            docs = index.by_doc
            docs.sort_indices()
            dataset = SeismicDataset(dim=docs.shape[1])
            dataset.add_documents_by_id([str(i) for i in range(docs.shape[0])], docs.indices.astype(np.int64),
                                        docs.data.astype(np.float32), docs.indptr.astype(np.int64))
            with _native_output():  # Seismic prints its progress on stdout, where runs may go: to the debug log
                self.index = SeismicIndex.build_from_dataset(dataset, num_threads=torch.get_num_threads(),
                                                             **{k: params[k] for k in self.BUILD if k in params})
        self.build_seconds = time.perf_counter() - started
        self.nbytes = _seismic_bytes(self.index)

    def configure(self, settings) -> None:
        """Search-time parameters (not part of what is built)."""
        self.query_cut, self.heap_factor = int(settings.seismic["query_cut"]), float(settings.seismic["heap_factor"])

    def save(self, folder: Path) -> None:
        with _native_output():
            self.index.save(str(folder / "seismic"))

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


@contextmanager
def _native_output():
    """What native code prints on stdout (Seismic's progress) goes to the debug log."""
    with tempfile.TemporaryFile(mode="w+b") as capture:
        with _stdout_to(capture.fileno()):
            yield
        capture.seek(0)
        for line in capture.read().decode(errors="replace").splitlines():
            log.debug("seismic: %s", line)


def _seismic_bytes(index) -> int:
    """The index's own count of its bytes (it only prints it: read from the process's stdout)."""
    with tempfile.TemporaryFile(mode="w+b") as capture:
        with _stdout_to(capture.fileno()):
            index.print_space_usage_byte()
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    numbers = [int(n) for n in re.findall(r"(\d+)\s*[Bb]ytes", text)] or [int(n) for n in re.findall(r"\d{4,}", text)]
    return max(numbers, default=0)
