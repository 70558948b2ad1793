"""Rankers for the baselines that are not bi-encoders: BM25 and the cross-encoder reranker.

Both follow `Ranker`'s interface (index, rank, efficiency) so evaluate_split treats every model
alike. BM25 ranks the whole corpus or each query's candidates. The cross-encoder scores each
(query, candidate) pair; on a corpus split it needs RETRIEVER.RERANK.RUN to supply candidates.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from calflops import calculate_flops
from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData
from HybridPQA.engine.runtime import autocast
from HybridPQA.errors import InputError
from HybridPQA.evaluation.efficiency import peak_memory_mb, query_latency
from HybridPQA.evaluation.trec import Run
from HybridPQA.modeling.bm25 import BM25
from HybridPQA.modeling.cross import CrossEncoder, tokenize_pairs
from HybridPQA.retrieval.index import top_k


class BM25Ranker:
    def __init__(self, model: BM25, cfg: CfgNode):
        self.model, self.depth = model, cfg.RETRIEVER.SOLVER.TOP_RETRIEVE_COUNT

    def index(self, data: RankingData) -> None:
        started = time.perf_counter()
        self.data, self.docids = data, list(data.docs)
        self.row = {d: i for i, d in enumerate(self.docids)}
        self.model.index([data.docs[d] for d in self.docids])
        self.encode_seconds = time.perf_counter() - started

    def _rank_one(self, qid: str, depth: int) -> dict[str, float]:
        scores = self.model.scores(self.data.queries[qid])
        columns = self.docids if self.data.candidates is None else self.data.candidates[qid]
        if self.data.candidates is not None:
            scores = scores[[self.row[d] for d in columns]]
        index, values = top_k(scores[None], min(depth, len(columns)))
        return {columns[c]: v for c, v in zip(index[0], values[0].tolist())}

    def rank(self, qids: list[str], fusion=None, depth: int | None = None, q_reps=None) -> dict[str, Run]:
        depth = depth or (self.depth if self.data.candidates is None else len(self.docids))
        return {"bm25": {q: self._rank_one(q, depth) for q in qids}}

    def efficiency(self, data: RankingData, fusion=None, compute_flops: bool = True) -> dict:
        latency = query_latency(lambda q: self._rank_one(q, self.depth), list(data.queries), torch.device("cpu"))
        return {"corpus": {"documents": len(data.docs), "encode_seconds": self.encode_seconds,
                           "docs_per_s": len(data.docs) / max(self.encode_seconds, 1e-9), **peak_memory_mb(torch.device("cpu"))},
                "bm25": {"gflops_per_query": 0.0, "gflops_per_pair": 0.0, **latency},
                "latency_note": "one query at a time: analyse + score every document (candidates or corpus) + top-k"}


class CrossRanker:
    def __init__(self, model: CrossEncoder, tokenizer, cfg: CfgNode, device: torch.device, dtype):
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        m, s = cfg.RETRIEVER.MODEL, cfg.RETRIEVER.SOLVER
        self.max_length, self.batch_size = m.QUESTION_MAX_LENGTH + m.CONTEXT_MAX_LENGTH, s.TEST_CTX_BSZ

    def index(self, data: RankingData) -> None:
        if data.candidates is None:
            raise InputError(f"{data.name}: the cross-encoder reranks candidates and this split has none; set "
                             "RETRIEVER.RERANK.RUN to a first-stage run (e.g. BM25's runs/{split}.bm25.trec)")
        self.data, self.encode_seconds = data, 0.0  # nothing is computed ahead of the queries

    @torch.inference_mode()
    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Scores of (qid, docid) pairs, in batches of similar length."""
        self.model.eval()
        texts = [(self.data.queries[q], self.data.docs[d]) for q, d in pairs]
        lengths = [len(q) + len(d) for q, d in texts]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros(len(pairs), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = tokenize_pairs(self.tokenizer, [texts[i][0] for i in chunk], [texts[i][1] for i in chunk],
                                   self.max_length, self.device)
            with autocast(self.device, self.dtype):
                out[chunk] = self.model(**batch).float().cpu().numpy()
        return out

    def rank(self, qids: list[str], fusion=None, depth: int | None = None, q_reps=None) -> dict[str, Run]:
        pairs = [(q, d) for q in qids for d in self.data.candidates[q]]
        scores = self.score_pairs(pairs)
        run: Run = {q: {} for q in qids}
        for (q, d), value in zip(pairs, scores.tolist()):
            run[q][d] = value
        return {"cross": run}

    def efficiency(self, data: RankingData, fusion=None, compute_flops: bool = True) -> dict:
        entry = {}
        pairs = [(q, d) for q in data.queries for d in data.candidates[q]]
        if compute_flops and pairs:
            lengths = [len(self.data.queries[q]) + len(self.data.docs[d]) for q, d in pairs]
            q, d = pairs[int(np.argsort(lengths)[len(lengths) // 2])]
            batch = tokenize_pairs(self.tokenizer, [data.queries[q]], [data.docs[d]], self.max_length, self.device)
            flops, _, _ = calculate_flops(model=self.model, kwargs=batch, print_results=False, output_as_string=False)
            entry["gflops_per_pair"] = flops / 1e9
            entry["median_pair_tokens"] = int(batch["input_ids"].shape[1])
            entry["gflops_per_query"] = entry["gflops_per_pair"] * len(pairs) / len(data.queries)
        entry.update(query_latency(lambda q: self.rank([q]), list(data.queries), self.device))
        return {"corpus": {"documents": len(data.docs), "pairs": len(pairs), **peak_memory_mb(self.device)},
                "cross": entry,
                "latency_note": "one query at a time: score every candidate pair through the cross-encoder"}
