"""Where each pluggable backend's code lives, as "module:Class" text, so that the config checks a
choice without importing anything and a new backend is one file plus one line here:

- STORES (RETRIEVER.INDEX.STORE): where a corpus's vectors live. "memory" is this process
  (retrieval.corpus); the others are vector databases (retrieval.databases), each one adapter;
- ENGINES (RETRIEVER.INDEX.SPARSE / DENSE): the per-head top-k searchers of the in-process store
  (retrieval.engines): the head each serves, whether it is approximate, its class.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple


MEMORY = "memory"
STORES = {MEMORY: "HybridPQA.retrieval.corpus:CorpusIndex",
          "qdrant": "HybridPQA.retrieval.databases.qdrant:QdrantDatabase",
          "milvus": "HybridPQA.retrieval.databases.milvus:MilvusDatabase"}


class Engine(NamedTuple):
    head: str  # "sparse" | "dense"
    approximate: bool
    code: str
    params: str = ""  # the RETRIEVER.INDEX section of its parameters (SEISMIC, HNSW, IVF), lower case


ENGINES = {"exact": Engine("sparse", False, "HybridPQA.retrieval.engines.exact:ExactEngine"),
           "seismic": Engine("sparse", True, "HybridPQA.retrieval.engines.seismic:SeismicEngine", "seismic"),
           "bmp": Engine("sparse", True, "HybridPQA.retrieval.engines.bmp:BmpEngine", "bmp"),
           "pruned": Engine("sparse", True, "HybridPQA.retrieval.engines.pruned:PrunedEngine", "pruned"),
           "torch": Engine("dense", False, "HybridPQA.retrieval.engines.exact:ExactEngine"),
           "faiss": Engine("dense", False, "HybridPQA.retrieval.engines.faiss:FlatEngine"),
           "hnsw": Engine("dense", True, "HybridPQA.retrieval.engines.faiss:HnswEngine", "hnsw"),
           "hnsw-sq8": Engine("dense", True, "HybridPQA.retrieval.engines.faiss:HnswSqEngine", "hnsw"),
           "ivf-pq": Engine("dense", True, "HybridPQA.retrieval.engines.faiss:IvfPqEngine", "ivf")}
DATABASES = tuple(name for name in STORES if name != MEMORY)


def engines_of(head: str) -> tuple[str, ...]:
    return tuple(name for name, engine in ENGINES.items() if engine.head == head)


def load(code: str):
    """The class that "module:Class" names (each backend imports its own library when built)."""
    module, name = code.split(":")
    return getattr(importlib.import_module(module), name)
