"""Data: readers for four formats, the paper's text options, training batches."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData, find_split, read_split
from HybridPQA.data.text import context_text, question_text
from HybridPQA.errors import InputError


def build_split(path: str | Path, data_cfg: CfgNode) -> RankingData:
    """Read one split, keep the first DATA.COUNT questions, and apply the text options."""
    data = read_split(path).head(data_cfg.COUNT)
    docs = {d: context_text(text, data.doc_source.get(d), insert_source=data_cfg.INSERT_SOURCE,
                            normalize=data_cfg.NORMALIZE, normalize_numbers=data_cfg.NORMALIZE_NUMBERS,
                            flatten_attributes=data_cfg.FLATTEN_ATTRIBUTE)
            for d, text in data.docs.items()}
    queries = {q: question_text(t, normalize_numbers=data_cfg.NORMALIZE_NUMBERS) for q, t in data.queries.items()}
    return dataclasses.replace(data, queries=queries, docs=docs)


def carve_val(data: RankingData, fraction: float) -> tuple[RankingData, RankingData]:
    """(train, val): a question goes to val when md5(qid) falls in the first `fraction` of the
    hash range, so the split depends on nothing but the ids. Both keep every document."""
    def held_out(qid: str) -> bool:
        return int(hashlib.md5(qid.encode()).hexdigest()[:8], 16) < fraction * 2 ** 32

    def part(name: str, keep: bool) -> RankingData:
        qids = [q for q in data.queries if held_out(q) == keep]
        return dataclasses.replace(
            data, name=name, queries={q: data.queries[q] for q in qids},
            qrels={q: data.qrels[q] for q in qids if q in data.qrels},
            candidates=None if data.candidates is None else {q: data.candidates[q] for q in qids},
            query_group={q: g for q, g in data.query_group.items() if q in set(qids)})

    return part(data.name, False), part(f"{data.name}-val", True)


def with_hard_negatives(data: RankingData, run: dict[str, dict[str, float]], depth: int, source: str) -> RankingData:
    """Training data whose candidate lists are each question's top `depth` documents of `run`
    (a TREC run); TrainingSet samples its negatives from them, skipping the positives."""
    covered = [q for q in data.judged_qids() if q in run]
    if not covered:
        raise InputError(f"{source}: none of the {len(data.queries)} training questions is in this run; "
                         "retrieve the training split with `hybridpqa evaluate --split=<train split>`")
    candidates = {q: [d for d, _ in sorted(run.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0]))
                      if d in data.docs][:depth] for q in data.queries}
    return dataclasses.replace(data, candidates=candidates)


__all__ = ["RankingData", "build_split", "carve_val", "find_split", "read_split", "with_hard_negatives"]
