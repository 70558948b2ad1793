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

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from HybridPQA.heads import SPARSE
from HybridPQA.errors import InputError
from HybridPQA.retrieval.index import DenseIndex, SparseIndex

log = logging.getLogger(__name__)
EXACT_ENGINES = ("exact", "torch", "faiss")
ENGINE_FILE = "engine.json"  # in <index>/engines/<head>-<engine>-<key>/, beside the engine's own files


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
    database: str = "memory"  # or a vector database (retrieval.database): "qdrant" | "milvus"
    uri: str = ""  # the database's: "" = embedded in the index folder
    collection: str = ""  # "" = the index folder's name
    batch: int = 256  # documents per write request
    named_uris: tuple[str, ...] = ()  # database URLs the user named (not read from a folder): only they get a key

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
                          lower(ix.HNSW), lower(ix.IVF), ix.ENGINE, ix.URI, ix.COLLECTION, int(ix.BATCH))


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

    def __init__(self, index: SparseIndex, params: dict, saved: Path | None = None):
        try:
            from seismic import SeismicDataset, SeismicIndex, get_seismic_string
        except ImportError:
            raise InputError("RETRIEVER.INDEX.SPARSE = 'seismic' needs pyseismic-lsr: pip install pyseismic-lsr") from None
        self.query_cut, self.heap_factor = int(params["query_cut"]), float(params["heap_factor"])
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
                                                             **build_params("seismic", params))
        self.build_seconds = time.perf_counter() - started
        self.nbytes = _seismic_bytes(self.index)

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


class FaissEngine:
    """A FAISS inner-product index over a DenseIndex's vectors: flat (exact), HNSW or IVF-PQ."""

    def __init__(self, index: DenseIndex, kind: str, hnsw: dict, ivf: dict, saved: Path | None = None):
        try:
            import faiss
        except ImportError:
            raise InputError(f"RETRIEVER.INDEX.DENSE = {kind!r} needs faiss-cpu: pip install faiss-cpu") from None
        faiss.omp_set_num_threads(torch.get_num_threads())
        started = time.perf_counter()
        self.approximate, self.ef_search = kind != "faiss", int(hnsw.get("ef_search", 0))
        if saved is not None:
            self.index = faiss.read_index(str(saved / "faiss.index"))
        else:
            self.index = self._build(faiss, index, kind, hnsw, ivf)
        if kind == "ivf-pq":
            self.index.nprobe = int(ivf["nprobe"])
        self.build_seconds = time.perf_counter() - started
        self.nbytes = int(faiss.serialize_index(self.index).nbytes)

    @staticmethod
    def _build(faiss, index: DenseIndex, kind: str, hnsw: dict, ivf: dict):
        vectors = np.ascontiguousarray(index.vectors, dtype=np.float32)
        n, dim = vectors.shape
        if kind == "faiss":
            built = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            built = faiss.IndexHNSWFlat(dim, int(hnsw["m"]), faiss.METRIC_INNER_PRODUCT)
            built.hnsw.efConstruction = int(hnsw["ef_construction"])
        else:
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

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(folder / "faiss.index"))

    def search(self, queries: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(self.index, "hnsw"):  # HNSW needs a beam at least as wide as the depth asked for
            self.index.hnsw.efSearch = max(self.ef_search, k)
        values, rows = self.index.search(np.ascontiguousarray(queries.float().numpy()), k)
        return rows.astype(np.int64), values


BUILD_PARAMS = {"seismic": SeismicEngine.BUILD, "hnsw": ("m", "ef_construction"), "ivf-pq": ("nlist", "pq_m", "pq_bits"),
                "faiss": ()}  # what shapes a built engine; the rest (query_cut, ef_search, nprobe) is read at search


def build_params(name: str, params: dict) -> dict:
    return {k: params[k] for k in BUILD_PARAMS[name] if k in params}


def build_engine(head: str, index: SparseIndex | DenseIndex, settings: EngineSettings, keep: Path | None = None,
                 fingerprint: str = ""):
    """The engine `settings` chooses for `head` ("sparse" | "dense") over `index`. An approximate one is
    built once: with `keep` (an index folder's engines/) it is saved there, named by its build
    parameters and the index's `fingerprint`, and loaded from there on later calls."""
    name = settings.engine(head)
    if name in ("exact", "torch"):
        return ExactEngine(index)
    params = {"seismic": settings.seismic, "hnsw": settings.hnsw, "ivf-pq": settings.ivf}.get(name, {})
    make = (lambda saved: SeismicEngine(index, settings.seismic, saved)) if head == SPARSE else \
        (lambda saved: FaissEngine(index, name, settings.hnsw, settings.ivf, saved))
    key = hashlib.sha256(json.dumps([head, name, build_params(name, params), fingerprint],
                                    sort_keys=True).encode()).hexdigest()[:12]
    folder = keep / f"{head}-{name}-{key}" if keep is not None else None
    if folder is not None and (folder / ENGINE_FILE).is_file():
        engine = make(folder)
        engine.load_seconds, engine.build_seconds = engine.build_seconds, \
            json.loads((folder / ENGINE_FILE).read_text(encoding="utf-8"))["build_seconds"]
        log.info("%s index: %s over %d documents loaded from %s in %.2f s (built once in %.2f s)", head,
                 settings.describe(head), len(index.docids), folder, engine.load_seconds, engine.build_seconds)
        return engine
    engine = make(None)
    log.info("%s index: %s over %d documents built in %.2f s (%.1f MB)", head, settings.describe(head),
             len(index.docids), engine.build_seconds, engine.nbytes / 2 ** 20)
    if folder is not None:
        _keep(engine, folder, {"head": head, "engine": name, "params": build_params(name, params),
                               "documents": len(index.docids), "build_seconds": round(engine.build_seconds, 3),
                               "bytes": engine.nbytes})
    return engine


def _keep(engine, folder: Path, meta: dict) -> None:
    """Save a built engine into `folder` (written beside it, then renamed in); where the index folder is
    not writable, say so: it is built again next time."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True)  # ours from here: only a folder this call made is ever removed
    except OSError as err:
        log.warning("%s: cannot keep the built engine there (%s); it is built again on the next search",
                    folder.parent, err.__class__.__name__)
        return
    try:
        engine.save(tmp)
        (tmp / ENGINE_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        tmp.rename(folder)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / ENGINE_FILE).is_file():  # not another process's, saved first
            log.warning("%s: cannot keep the built engine there (%s); it is built again on the next search",
                        folder.parent, err.__class__.__name__)


def drop_engines(folder: Path) -> None:
    """Remove the kept engines under `folder` (an index's engines/): only subfolders whose engine.json
    parses as ours; anything else there is left alone."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in folder.iterdir():
        try:
            meta = json.loads((sub / ENGINE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(meta, dict) and {"head", "engine", "params"} <= set(meta) and not sub.is_symlink():
            shutil.rmtree(sub, ignore_errors=True)
    try:
        folder.rmdir()  # only when nothing else is left in it
    except OSError:
        pass
