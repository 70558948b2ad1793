"""Rank a split with every scorer, write TREC runs, score them, save results/<split>.json.

Mode follows the data: a split with candidate lists is reranked (hetPQA), one without is
retrieved from the whole corpus with exact scores (BEIR). Scorers: dense, sparse and
hybrid = ALPHA * dense + (1 - ALPHA) * sparse, fused on exact scores, so the hybrid run is
exact at any depth.
"""
from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from calflops import calculate_flops
from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData
from HybridPQA.evaluation.encode import active_dims, encode, full_scores, normalized, pair_scores
from HybridPQA.evaluation.metrics import RERANK_METRICS, RETRIEVE_METRICS, per_source, score_run
from HybridPQA.evaluation.trec import Run, read_trec, write_trec
from HybridPQA.modeling import BiEncoder, tokenize

log = logging.getLogger(__name__)


def fuse(dense: np.ndarray, sparse: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * dense + (1 - alpha) * sparse


def _with_hybrid(scores: dict[str, np.ndarray], alpha: float) -> dict[str, np.ndarray]:
    if {"dense", "sparse"} <= set(scores):
        return {"hybrid": fuse(scores["dense"], scores["sparse"], alpha), **scores}
    return scores


class Ranker:
    """Encodes a split's documents once, then ranks queries against them with every scorer."""

    def __init__(self, model: BiEncoder, tokenizer, cfg: CfgNode, device: torch.device, dtype):
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        self.m, self.s = cfg.RETRIEVER.MODEL, cfg.RETRIEVER.SOLVER

    def _encode(self, side: str, texts: list[str], batch_size: int):
        max_len = self.m.QUESTION_MAX_LENGTH if side == "query" else self.m.CONTEXT_MAX_LENGTH
        reps = encode(self.model, self.tokenizer, side, texts, max_len, batch_size, self.device, self.dtype)
        return normalized(reps) if self.s.FUNC == "cosine" else reps

    def index(self, data: RankingData) -> None:
        self.data, self.docids = data, list(data.docs)
        self.row = {d: i for i, d in enumerate(self.docids)}
        self.doc_reps = self._encode("context", [data.docs[d] for d in self.docids], self.s.TEST_CTX_BSZ)

    def rank(self, qids: list[str]) -> dict[str, Run]:
        """{scorer: run} for `qids`: their candidates, or the top TOP_RETRIEVE_COUNT of the corpus."""
        q_reps = self._encode("query", [self.data.queries[q] for q in qids], self.s.TEST_BATCH_SIZE)
        runs: dict[str, Run] = {}
        if self.data.candidates is not None:
            q_index = np.array([i for i, q in enumerate(qids) for _ in self.data.candidates[q]], dtype=np.int64)
            d_index = np.array([self.row[d] for q in qids for d in self.data.candidates[q]], dtype=np.int64)
            scores = _with_hybrid(pair_scores(q_reps, self.doc_reps, q_index, d_index), self.s.ALPHA)
            for scorer, values in scores.items():
                run = runs.setdefault(scorer, {q: {} for q in qids})
                for qi, di, value in zip(q_index, d_index, values.tolist()):
                    run[qids[qi]][self.docids[di]] = value
        else:
            scores = _with_hybrid(full_scores(q_reps, self.doc_reps), self.s.ALPHA)
            depth = min(self.s.TOP_RETRIEVE_COUNT, len(self.docids))
            for scorer, matrix in scores.items():
                top = np.argpartition(-matrix, depth - 1, axis=1)[:, :depth]
                runs[scorer] = {q: {self.docids[j]: float(matrix[i, j]) for j in top[i]} for i, q in enumerate(qids)}
        self.query_active_dims = active_dims(q_reps)
        return runs


def metrics_of(runs: dict[str, Run], data: RankingData) -> dict[str, dict[str, float]]:
    names = RERANK_METRICS if data.mode == "rerank" else RETRIEVE_METRICS
    return {scorer: score_run(run, data.qrels, names) for scorer, run in runs.items()}


def efficiency(ranker: Ranker, data: RankingData, compute_flops: bool, num_latency: int = 50) -> dict:
    """Active dimensions, encoder GFLOPs (calflops, at the median real length) and query latency."""
    out = {"avg_active_dims_query": ranker.query_active_dims,
           "avg_active_dims_context": active_dims(ranker.doc_reps)}
    if compute_flops:
        for side, texts, max_len in (("query", list(data.queries.values()), ranker.m.QUESTION_MAX_LENGTH),
                                     ("context", list(data.docs.values()), ranker.m.CONTEXT_MAX_LENGTH)):
            lengths = [len(x) for x in ranker.tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]]
            median = texts[int(np.argsort(lengths)[len(lengths) // 2])]
            batch = tokenize(ranker.tokenizer, [median], max_len, ranker.device)
            encoder = ranker.model.query_encoder if side == "query" or ranker.model.context_encoder is None \
                else ranker.model.context_encoder
            flops, _, _ = calculate_flops(model=encoder, kwargs=batch, print_results=False, output_as_string=False)
            out[f"gflops_per_{side}"] = flops / 1e9
            out[f"median_{side}_tokens"] = int(np.median(lengths))
    timings = []
    for qid in list(data.queries)[:num_latency + 3]:
        start = time.perf_counter()
        ranker.rank([qid])
        if ranker.device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    out["query_latency_ms_mean"] = 1000 * statistics.mean(timings[3:] or timings)  # first 3 are warm-up
    out["query_latency_note"] = "encode one query + score its candidates/corpus + rank, batch size 1"
    return out


def evaluate_split(model: BiEncoder, tokenizer, data: RankingData, cfg: CfgNode, device: torch.device, dtype,
                   run_dir: Path | None = None, split: str | None = None, with_efficiency: bool = True) -> dict:
    """Rank, score and (with run_dir) write runs/<split>.<scorer>.trec and results/<split>.json."""
    ranker = Ranker(model, tokenizer, cfg, device, dtype)
    started = time.perf_counter()
    ranker.index(data)
    runs = ranker.rank(list(data.queries))
    split = split or data.name
    if run_dir is not None:  # score what the TREC files say, so the files and the metrics agree
        for scorer, run in runs.items():
            write_trec(run, run_dir / "runs" / f"{split}.{scorer}.trec", f"{cfg.EXP}.{scorer}")
            runs[scorer] = read_trec(run_dir / "runs" / f"{split}.{scorer}.trec")
    judged = data.judged_qids()
    results = {
        "split": split, "dataset": cfg.RETRIEVER.DATA.NAME, "mode": data.mode,
        "alpha": cfg.RETRIEVER.SOLVER.ALPHA,
        "queries": len(data.queries), "queries_scored": len(judged),
        "queries_without_positive": len(data.queries) - len(judged),
        "documents": len(data.docs), "input_issues": len(data.issues),
        "metrics": metrics_of(runs, data),
        "seconds": time.perf_counter() - started,
    }
    if data.mode == "rerank" and data.doc_source:
        results["per_source"] = {scorer: per_source(run, data, RERANK_METRICS) for scorer, run in runs.items()}
    if with_efficiency:
        results["efficiency"] = efficiency(ranker, data, cfg.RETRIEVER.COMPUTE_FLOPS)
    if run_dir is not None:
        path = run_dir / "results" / f"{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(results, indent=2))
        path.with_suffix(".tmp").replace(path)
    return results
