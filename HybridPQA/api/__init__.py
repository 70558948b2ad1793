"""The Python API: load a model, encode, score, index a corpus and search it, explain a score.

    from HybridPQA import HybridRetriever, SearchIndex
    retriever = HybridRetriever.from_pretrained("output/quickstart/checkpoints/step_000400")
    index = SearchIndex.build(retriever, {"d1": "usb-c charging cable", "d2": "a wool sweater"})
    index.search(["does it charge over usb?"], k=2)   # [[("d1", 0.71), ("d2", 0.12)]]

Two nouns: `HybridRetriever` (api.retriever: load, encode, score, explain, export) and
`SearchIndex` (api.search_index: build, save, load, push, search), and the one check of a search
request (api.request), which the commands and the service use too. Every call applies the model's
saved encoding settings and its fusion, so scores are those `hybridpqa evaluate` ranks with.
"""
from __future__ import annotations

import importlib

_WHERE = {"SCORERS": "request", "SearchRequest": "request", "check_request": "request",
          "Encoded": "retriever", "HybridRetriever": "retriever",
          "Detailed": "search_index", "SearchIndex": "search_index", "is_interrupted": "search_index"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:  # imported on first use: api.request stays light (no torch) for the commands' checks
        return getattr(importlib.import_module(f"HybridPQA.api.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'HybridPQA.api' has no attribute {name!r}")
