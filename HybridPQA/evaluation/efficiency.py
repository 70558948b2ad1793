"""The `efficiency` block of results/<split>.json: the cost of each scorer next to its quality.

Per scorer (dense, sparse, hybrid, late), with only the heads that scorer needs switched on:
encoder GFLOPs per query and per document (calflops, at the median real length), on rerank
splits GFLOPs per query-candidate pair (the query's encoding shared by its candidates, documents
encoded ahead), index size, and single-query latency p50/p95 (encode + search + top-k,
synchronised on GPU). Sparse
scorers add active dimensions and SPLADE's expected FLOPs per query-document pair,
sum_v p_q(v) * p_d(v), with p the fraction of queries / documents where term v is non-zero.
The corpus part holds what is shared: encoding speed and the process's peak memory.
"""
from __future__ import annotations

import logging
import resource
import statistics
import time

import numpy as np
import torch
from calflops import calculate_flops

from HybridPQA.data.readers import RankingData
from HybridPQA.heads import HEADS, HYBRID, LATE, SCORER_HEADS, SPARSE, scorers
from HybridPQA.modeling.encode import active_dims, tokenize
from HybridPQA.retrieval.kernels import top_k
from HybridPQA.runtime import progress
from HybridPQA.scoring import Fusion

log = logging.getLogger(__name__)


def expected_flops(queries, docs) -> float:
    """SPLADE's FLOPS: expected number of multiplications per (query, document) pair."""
    p_q = np.asarray((queries != 0).mean(axis=0)).ravel()
    p_d = np.asarray((docs != 0).mean(axis=0)).ravel()
    return float(p_q @ p_d)


class _Only(torch.nn.Module):
    """An encoder side computing only `heads` (calflops passes tensors only)."""

    def __init__(self, encoder: torch.nn.Module, heads: tuple[str, ...]):
        super().__init__()
        self.encoder, self.heads = encoder, heads

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        return self.encoder(input_ids, attention_mask, self.heads)


def _gflops(ranker, side: str, texts: list[str], heads: tuple[str, ...]) -> tuple[float, int]:
    max_len = ranker.encoding.max_length(side)
    lengths = [len(x) for x in ranker.tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]]
    median = texts[int(np.argsort(lengths)[len(lengths) // 2])]
    batch = tokenize(ranker.tokenizer, [median], max_len, ranker.device)
    model = ranker.model
    encoder = model.context_encoder if side == "context" and model.context_encoder is not None else model.query_encoder
    flops, _, _ = calculate_flops(model=_Only(encoder, heads), kwargs=batch, print_results=False,
                                  output_as_string=False)
    return flops / 1e9, int(np.median(lengths))


def query_latency(run_one: dict, qids: list[str], device: torch.device, count: int = 50) -> dict[str, dict]:
    """{name: p50 / p95 milliseconds and query count} of each `run_one[name](qid)`, one query at a time,
    the names interleaved (each query runs them all, in a rotating order) after 3 warm-up queries, so
    every scorer is timed under the same conditions."""
    names, timings = list(run_one), {name: [] for name in run_one}
    for i, qid in enumerate(progress(qids[:count + 3], desc="latency", unit="query")):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            run_one[name](qid)
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings[name].append(time.perf_counter() - start)
    out = {}
    for name, times in timings.items():
        times = times[3:] if len(times) > 3 else times
        out[name] = {"latency_ms_p50": 1000 * statistics.median(times),
                     "latency_ms_p95": 1000 * float(np.percentile(times, 95)), "latency_queries": len(times)}
    return out


def _search_one(ranker, data: RankingData, scorer: str, fusion: Fusion, qid: str) -> None:
    """Encode one query, search the corpus (or score every candidate), take the top-k."""
    q_reps = ranker.encode("query", [data.queries[qid]], 1, SCORER_HEADS[scorer])
    if data.candidates is None:
        ranker.corpus.search(q_reps, [qid], fusion, ranker.depth, (scorer,))
        return
    for _, scores in ranker.head_scores(q_reps, [qid]):
        matrix = fusion.fuse(*(scores[h] for h in SCORER_HEADS[HYBRID])) if scorer == HYBRID else scores[scorer]
        top_k(matrix, ranker.depth)


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: KiB
    if device.type == "cuda":
        out["peak_gpu_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


def efficiency(ranker, data: RankingData, fusion: Fusion, compute_flops: bool, ranked, num_latency: int = 50) -> dict:
    """`ranked`: the split's ranking (rankers.Ranked), whose encoded queries give the active dimensions."""
    out = {"corpus": {
        "documents": len(data.docs), "encode_seconds": ranker.encode_seconds,
        "docs_per_s": len(data.docs) / max(ranker.encode_seconds, 1e-9),
        "device": str(ranker.device), "dtype": str(ranker.dtype or torch.float32),
    }}
    names = scorers(ranker.model.heads)
    log.info("efficiency of %s: %s%d-query latency", ", ".join(names), "FLOPs, " if compute_flops else "", num_latency)
    latency = query_latency({scorer: (lambda q, scorer=scorer: _search_one(ranker, data, scorer, fusion, q))
                             for scorer in names}, list(data.queries), ranker.device, num_latency)
    for scorer in progress(names, desc="efficiency", unit="scorer"):
        needs, entry = SCORER_HEADS[scorer], {}  # only the heads this scorer needs are computed
        if compute_flops:
            for side, name, texts in (("query", "query", list(data.queries.values())),
                                      ("context", "document", list(data.docs.values()))):
                entry[f"gflops_per_{name}"], entry[f"median_{name}_tokens"] = _gflops(ranker, side, texts, needs)
        entry.update(latency[scorer])
        if compute_flops and data.candidates is not None:  # documents are encoded ahead of the queries
            per_query = sum(len(c) for c in data.candidates.values()) / max(len(data.candidates), 1)
            entry["candidates_per_query"] = per_query
            entry["gflops_per_pair"] = entry["gflops_per_query"] / max(per_query, 1e-9)
            if LATE in needs:  # MaxSim: every query token against every document token
                dim = ranker.doc_reps[LATE].shape[-1]
                entry["maxsim_gflops_per_pair"] = 2 * entry["median_query_tokens"] * entry["median_document_tokens"] * dim / 1e9
                entry["gflops_per_pair"] += entry["maxsim_gflops_per_pair"]
            entry["gflops_per_pair_documents_online"] = entry["gflops_per_pair"] + entry["gflops_per_document"]
        if SPARSE in needs:
            entry["avg_active_dims_query"] = active_dims(ranked.query_reps)
            entry["avg_active_dims_document"] = active_dims(ranker.doc_reps)
            entry["expected_flops_per_pair"] = expected_flops(ranked.query_reps[SPARSE], ranker.doc_reps[SPARSE])
        if data.candidates is None:
            entry["index_bytes"] = sum(ranker.corpus.engine(h).nbytes for h in needs)
        else:
            entry["vector_bytes"] = sum(HEADS[h].nbytes(ranker.doc_reps[h]) for h in needs)
        out[scorer] = entry
    out["corpus"].update(peak_memory_mb(ranker.device))
    out["latency_note"] = ("one query at a time: encode + score every document (candidates or corpus) + top-k; "
                           "the scorers interleaved query by query")
    return out
