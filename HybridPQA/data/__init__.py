"""Data: readers for four formats, the paper's text options, training batches."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from yacs.config import CfgNode

from HybridPQA.data.corpus import read_texts
from HybridPQA.data.readers import RankingData, find_split, read_split
from HybridPQA.data.text import TextOptions
from HybridPQA.errors import InputError
from HybridPQA.scoring import ranking


def build_text_options(data_cfg: CfgNode) -> TextOptions:
    return TextOptions(data_cfg.INSERT_SOURCE, data_cfg.NORMALIZE, data_cfg.NORMALIZE_NUMBERS, data_cfg.FLATTEN_ATTRIBUTE)


def build_split(path: str | Path, data_cfg: CfgNode, path_data: str | Path | None = None) -> RankingData:
    """Read one split, keep the first DATA.COUNT questions, and apply the text options. A pairs file
    naming documents by id reads them from DATA.CORPUS_PATH (relative to `path_data`)."""
    corpus = None
    if data_cfg.CORPUS_PATH:
        corpus = read_texts(Path(path_data or ".") / data_cfg.CORPUS_PATH)
    data = read_split(path, corpus).head(data_cfg.COUNT)
    options = build_text_options(data_cfg)
    docs = dict(zip(data.docs, options.texts("context", list(data.docs.values()), [data.doc_source.get(d) for d in data.docs])))
    queries = dict(zip(data.queries, options.texts("query", list(data.queries.values()))))
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


def _top(run: dict[str, dict[str, float]], qid: str, docs: dict, depth: int, skip=()) -> list[str]:
    return [d for d, _ in ranking(run.get(qid, {})) if d in docs and d not in skip][:depth]


def _check_covers(data: RankingData, run: dict, source: str) -> None:
    if not any(q in run for q in data.judged_qids()):
        raise InputError(f"{source}: none of the {len(data.queries)} questions of {data.name} is in this run; "
                         f"give a run of that split (`hybridpqa evaluate --split=...` writes runs/<split>.*.trec)")


def with_hard_negatives(data: RankingData, run: dict[str, dict[str, float]], depth: int, source: str) -> RankingData:
    """Training data whose candidate lists are each question's positives and the top `depth` other
    documents of `run` (a TREC run): the hard negatives TrainingSet samples from."""
    _check_covers(data, run, source)
    candidates = {q: data.positives(q) + _top(run, q, data.docs, depth, set(data.positives(q))) for q in data.queries}
    return dataclasses.replace(data, candidates=candidates)


def rerank_split(data: RankingData, run: dict[str, dict[str, float]], depth: int, source: str) -> RankingData:
    """A corpus split turned into a rerank split: each query's candidates are its top `depth`
    documents of a first-stage run; only those documents are kept. Metrics stay retrieval ones."""
    _check_covers(data, run, source)
    candidates = {q: _top(run, q, data.docs, depth) for q in data.queries}
    keep = {d for docs in candidates.values() for d in docs}
    return dataclasses.replace(data, candidates=candidates, docs={d: t for d, t in data.docs.items() if d in keep},
                               first_stage=source)


__all__ = ["RankingData", "build_split", "carve_val", "find_split", "read_split", "rerank_split", "with_hard_negatives"]
