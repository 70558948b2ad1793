"""Data: readers for four formats, the paper's text options, training batches."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData, find_split, read_split
from HybridPQA.data.text import context_text, question_text


def build_split(path: str | Path, data_cfg: CfgNode) -> RankingData:
    """Read one split, keep the first DATA.COUNT questions, and apply the text options."""
    data = read_split(path).head(data_cfg.COUNT)
    docs = {d: context_text(text, data.doc_source.get(d), insert_source=data_cfg.INSERT_SOURCE,
                            normalize=data_cfg.NORMALIZE, normalize_numbers=data_cfg.NORMALIZE_NUMBERS,
                            flatten_attributes=data_cfg.FLATTEN_ATTRIBUTE)
            for d, text in data.docs.items()}
    queries = {q: question_text(t, normalize_numbers=data_cfg.NORMALIZE_NUMBERS) for q, t in data.queries.items()}
    return dataclasses.replace(data, queries=queries, docs=docs)


__all__ = ["RankingData", "build_split", "find_split", "read_split"]
