"""Top-k engines over the in-process store's documents, exact or approximate, chosen in the config
(RETRIEVER.INDEX.SPARSE / DENSE) from the registry (HybridPQA.backends.ENGINES: one file and one
line each):

- sparse: "exact" (the numba inverted index, retrieval.index), "seismic" (engines.seismic) or
  "bmp" (block-max pruning, engines.bmp) or "pruned" (the inverted index of each document's largest
  weights, engines.pruned); any of them may search each query's QUERY_TERMS largest
  terms only (query-term pruning, `retrieval.index.keep_largest`);
- dense: "torch" (exact matmul), "faiss" (exact IndexFlatIP), "hnsw" (IndexHNSWFlat), "hnsw-sq8"
  (IndexHNSWSQ over 8-bit codes, re-scored exactly) or "ivf-pq" (IndexIVFPQ), all inner product
  (engines.faiss).

An engine is built from an exact index's own arrays and answers `search(queries, k)` with (Q, k)
row numbers (-1 where it found fewer) and their scores. It only has to *find* documents: hybrid
retrieval re-scores every candidate exactly from the stored vectors (retrieval.corpus).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path


from HybridPQA.backends import ENGINES, MEMORY, load
from HybridPQA.heads import SPARSE
from HybridPQA.retrieval.index import DenseIndex, SparseIndex

log = logging.getLogger(__name__)
EXACT_ENGINES = tuple(name for name, engine in ENGINES.items() if not engine.approximate)
ENGINE_FILE = "engine.json"  # in <index>/engines/<head>-<engine>-<key>/, beside the engine's own files


@dataclass(frozen=True)
class EngineSettings:
    """Which engine serves each head, its parameters, and how the hybrid is retrieved.

    hybrid "exact": fuse every document's two scores; "candidates": each head's top `candidates`
    (k') documents (`sparse_candidates` / `dense_candidates` where set: one k' per head), their union
    re-scored exactly by both heads and fused, a linear fusion's
    normalisation statistics taken from the exact scores of `norm_sample` random documents
    (z-score: their mean and std; min-max: their min and the candidates' max), or with 0 from the
    union itself."""

    sparse: str = "exact"
    dense: str = "torch"
    hybrid: str = "exact"
    candidates: int = 200
    norm_sample: int = 1000  # documents whose scores give the candidate hybrid's normalisation statistics
    seismic: dict = field(default_factory=dict)  # n_postings, centroid_fraction, ..., query_cut, heap_factor
    bmp: dict = field(default_factory=dict)  # bsize, compress_range, threshold, query_share
    pruned: dict = field(default_factory=dict)  # doc_terms
    hnsw: dict = field(default_factory=dict)  # m, ef_construction, ef_search
    ivf: dict = field(default_factory=dict)  # nlist (0: 4 sqrt(N)), nprobe, pq_m, pq_bits
    store: str = MEMORY  # INDEX.STORE: or a vector database (retrieval.databases): "qdrant" | "milvus"
    uri: str = ""  # the database's: "" = embedded in the index folder
    collection: str = ""  # "" = the index folder's name
    batch: int = 256  # documents per write request
    named_uris: tuple[str, ...] = ()  # database URLs the user named (not read from a folder): only they get a key
    query_terms: int = 0  # a sparse engine searches each query's largest QUERY_TERMS terms only (0: all)
    sparse_candidates: int = 0  # k' of the sparse head (0: candidates)
    dense_candidates: int = 0  # k' of the dense head (0: candidates)

    def engine(self, head: str) -> str:
        return getattr(self, head)  # the field named by the head: sparse or dense

    def params(self, head: str) -> dict:
        section = ENGINES[self.engine(head)].params
        return getattr(self, section) if section else {}

    def exact_head(self, head: str) -> bool:
        """This head's engine ranks every document by its exact score."""
        return not ENGINES[self.engine(head)].approximate and not (head == SPARSE and self.query_terms)

    @property
    def exact(self) -> bool:
        """Every run comes from every document's exact scores (no engine is asked for a top-k)."""
        return self.hybrid == "exact" and self.sparse == "exact" and self.dense == "torch" and not self.query_terms

    def width(self, head: str) -> int:
        """k' of `head` under the candidate hybrid."""
        return getattr(self, f"{head}_candidates") or self.candidates

    def describe(self, head: str) -> str:
        pruned = f" query_terms={self.query_terms}" if head == SPARSE and self.query_terms else ""
        return self.engine(head) + "".join(f" {k}={v}" for k, v in self.params(head).items()) + pruned


def build_engine_settings(cfg) -> EngineSettings:
    """RETRIEVER.INDEX."""
    ix = cfg.RETRIEVER.INDEX
    lower = lambda node: {k.lower(): v for k, v in node.items()}  # noqa: E731
    return EngineSettings(ix.SPARSE, ix.DENSE, ix.HYBRID, int(ix.CANDIDATES), int(ix.NORM_SAMPLE),
                          seismic=lower(ix.SEISMIC), bmp=lower(ix.BMP), pruned=lower(ix.PRUNED), hnsw=lower(ix.HNSW),
                          ivf=lower(ix.IVF), store=ix.STORE, uri=ix.URI, collection=ix.COLLECTION, batch=int(ix.BATCH),
                          query_terms=int(ix.QUERY_TERMS), sparse_candidates=int(ix.SPARSE_CANDIDATES),
                          dense_candidates=int(ix.DENSE_CANDIDATES))


def build_engine(head: str, index: SparseIndex | DenseIndex, settings: EngineSettings, keep: Path | None = None,
                 fingerprint: str = ""):
    """The engine `settings` chooses for `head` ("sparse" | "dense") over `index`. An approximate one is
    built once: with `keep` (an index folder's engines/) it is saved there, named by its build
    parameters and the index's `fingerprint`, and loaded from there on later calls."""
    name = settings.engine(head)
    kind = load(ENGINES[name].code)
    if not hasattr(kind, "save"):  # nothing built: the exact index itself
        return kind(index, settings)
    make = lambda saved: kind(index, settings, saved)  # noqa: E731
    built_with = {k: v for k, v in settings.params(head).items() if k in kind.BUILD}  # the rest is read at search
    key = hashlib.sha256(json.dumps([head, name, built_with, fingerprint], sort_keys=True).encode()).hexdigest()[:12]
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
        _keep(engine, folder, {"head": head, "engine": name, "params": built_with,
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
