"""Rankers: encode or index a split's documents once, then rank queries with every scorer.

`Ranker` serves bi-encoders: dense, sparse, hybrid and late (MaxSim, rerank only). The hybrid is
fused from the dense and sparse scores of *every* document of a query (its candidates, or the
whole corpus, queries taken in chunks), then cut to the depth: exact at any depth for linear
fusion, any normalisation, and RRF. BM25 ranks the whole corpus or each query's candidates; the
cross-encoder scores each (query, candidate) pair and on a corpus split needs RETRIEVER.RERANK.RUN
to supply candidates. All three share one interface (index, rank, efficiency), so evaluate_split
treats every model alike, and take plain settings, never the config.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass

import numpy as np
import torch
from calflops import calculate_flops

from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError
from HybridPQA.evaluation.efficiency import efficiency, peak_memory_mb, query_latency
from HybridPQA.data.trec import Run
from HybridPQA.files import disk_error
from HybridPQA.heads import HEADS, LATE, SPARSE
from HybridPQA.modeling.bm25 import BM25
from HybridPQA.modeling.cross import CrossEncoder, tokenize_pairs
from HybridPQA.modeling.encode import Encoder, pair_scores
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.folder import write_index_files
from HybridPQA.retrieval.store import QUERY_CHUNK, fused_runs
from HybridPQA.retrieval.engines import EngineSettings
from HybridPQA.retrieval.index import save_queries
from HybridPQA.retrieval.kernels import top_k
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import progress
from HybridPQA.precision import autocast
from HybridPQA.scoring import Fusion

log = logging.getLogger(__name__)


@dataclass
class Ranked:
    """What ranking a split's queries gives: {scorer: run}, and the queries' encoded vectors (None
    for BM25 and the cross-encoder), which efficiency, approximation and the saved index read."""
    runs: dict[str, Run]
    qids: list[str]
    query_reps: dict | None = None


class Ranker:
    """A split-specific view over an `Encoder` (the one the Python API searches with): encodes a
    split's documents once, then ranks queries against them with every scorer.

    `depth`: documents kept per query from a corpus; `engines`: which exact or approximate engine
    serves each head of a corpus (retrieval.engines)."""

    def __init__(self, encoder: Encoder, *, depth: int = 100, engines: EngineSettings | None = None):
        self.encoder, self.depth, self.engines = encoder, depth, engines
        self.reused: CorpusIndex | None = None

    # what the evaluation reads of the model, the encoder's own (never copied)
    model = property(lambda self: self.encoder.model)
    tokenizer = property(lambda self: self.encoder.tokenizer)
    device = property(lambda self: self.encoder.device)
    dtype = property(lambda self: self.encoder.dtype)
    encoding = property(lambda self: self.encoder.encoding)

    def use_index(self, corpus: CorpusIndex) -> None:
        """Rank the next split's documents from this saved index (retrieval.corpus.open_index checked
        it is of this model, encoding and corpus) instead of encoding them."""
        self.reused = corpus

    def encode(self, side: str, texts: list[str], batch_size: int | None = None, heads: tuple[str, ...] | None = None):
        return self.encoder.encode(side, texts, batch_size, heads)

    def index(self, data: RankingData) -> None:
        """Encode every document (timed); in retrieve mode, build the corpus indexes."""
        if data.candidates is None and LATE in self.model.heads:
            raise InputError(f"{data.name}: late interaction reranks candidates and this split has none; set "
                             "RETRIEVER.RERANK.RUN to a first-stage run (e.g. BM25's runs/{split}.bm25.trec)")
        self.data, self.docids = data, list(data.docs)
        self.row = {d: i for i, d in enumerate(self.docids)}
        if self.reused is not None and data.candidates is None:
            if self.reused.docids != self.docids:
                raise InputError(f"{data.name}: the index given holds other documents than this split's")
            self.corpus, self.encode_seconds = self.reused, 0.0
            self.doc_reps = {h: ix.reps() for h, ix in self.reused.indexes.items()}
            log.info("%s: %d documents from the saved index %s (not encoded again)", data.name, len(self.docids),
                     self.reused.path)
            return
        log.info("%s: encoding %d documents (%s)", data.name, len(self.docids), str(self.dtype or torch.float32))
        started = time.perf_counter()
        self.doc_reps = self.encode("context", [data.docs[d] for d in self.docids])
        self.encode_seconds = time.perf_counter() - started
        log.info("%s: encoded %d documents in %.1f s (%.1f docs/s)", data.name, len(self.docids), self.encode_seconds,
                 len(self.docids) / max(self.encode_seconds, 1e-9))
        indexed = {h: v for h, v in self.doc_reps.items() if HEADS[h].indexed}
        self.corpus = CorpusIndex.build(indexed, self.docids, self.engines) if indexed and data.candidates is None else None

    def head_scores(self, q_reps, qids: list[str]):
        """Yield (query rows, {head: scores}) with every document of each query: (Q, N) matrices
        over the corpus, or in rerank mode one (1, n) row per query over its candidates."""
        if self.data.candidates is None:
            for start in progress(range(0, len(qids), QUERY_CHUNK), desc="search", unit="chunk",
                                  enabled=len(qids) > QUERY_CHUNK):
                rows = slice(start, start + QUERY_CHUNK)
                yield list(range(len(qids)))[rows], self.corpus.all_scores(q_reps, rows)
        else:
            q_index = np.array([i for i, q in enumerate(qids) for _ in self.data.candidates[q]], dtype=np.int64)
            d_index = np.array([self.row[d] for q in qids for d in self.data.candidates[q]], dtype=np.int64)
            flat = pair_scores(q_reps, self.doc_reps, q_index, d_index)
            bounds = np.searchsorted(q_index, np.arange(len(qids) + 1))
            for i in range(len(qids)):
                yield [i], {h: v[None, bounds[i]:bounds[i + 1]] for h, v in flat.items()}

    def rank(self, qids: list[str], fusion: Fusion, depth: int | None = None, q_reps=None) -> Ranked:
        """Every scorer's run of `qids`, each query's top `depth` (default TOP_RETRIEVE_COUNT; rerank
        mode keeps every candidate), with the encoded queries."""
        q_reps = q_reps or self.encode("query", [self.data.queries[q] for q in qids])
        depth = depth or self.depth
        if self.data.candidates is None:
            return Ranked(self.corpus.search(q_reps, qids, fusion, depth), list(qids), q_reps)
        runs: dict[str, Run] = {}
        for rows, scores in self.head_scores(q_reps, qids):
            fused_runs(scores, fusion, None, [qids[r] for r in rows], [self.data.candidates[qids[r]] for r in rows],
                       runs)
        return Ranked(runs, list(qids), q_reps)

    def efficiency(self, data: RankingData, fusion: Fusion, compute_flops: bool, ranked: Ranked) -> dict:
        return efficiency(self, data, fusion, compute_flops, ranked)

    def save_indexes(self, run_dir: RunDir, split: str, ranked: Ranked, meta: dict, config: str | None) -> None:
        """index/<split>/: a searchable index folder (retrieval.corpus.write_index_files: `meta` for its
        index.json, the model's `config`) with the vocabulary and the split's sparse queries, written
        into index/<split>.tmp and published whole by one rename."""
        path = run_dir.index_dir(split)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # a crashed evaluation's, inside this run
        try:
            for head, index in self.corpus.indexes.items():
                if head == SPARSE:
                    index.terms = self.tokenizer.convert_ids_to_tokens(list(range(index.by_term.shape[1])))
                index.save(tmp / head)
                if head == SPARSE:
                    save_queries(tmp / head, ranked.qids, ranked.query_reps[SPARSE])
            write_index_files(tmp, {**meta, "documents": len(self.docids), "heads": list(self.corpus.heads)},
                              self.data.docs, config)
        except OSError as err:
            raise disk_error(tmp, err) from None
        run_dir.publish(tmp, path)


class BM25Ranker:
    def __init__(self, model: BM25, depth: int = 100):
        self.model, self.depth = model, depth

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

    def rank(self, qids: list[str], fusion=None, depth: int | None = None, q_reps=None) -> Ranked:
        depth = depth or (self.depth if self.data.candidates is None else len(self.docids))
        return Ranked({"bm25": {q: self._rank_one(q, depth) for q in qids}}, list(qids))

    def efficiency(self, data: RankingData, fusion=None, compute_flops: bool = True, ranked=None) -> dict:
        latency = query_latency({"bm25": lambda q: self._rank_one(q, self.depth)}, list(data.queries),
                                torch.device("cpu"))["bm25"]
        return {"corpus": {"documents": len(data.docs), "encode_seconds": self.encode_seconds,
                           "docs_per_s": len(data.docs) / max(self.encode_seconds, 1e-9), **peak_memory_mb(torch.device("cpu"))},
                "bm25": {"gflops_per_query": 0.0, "gflops_per_pair": 0.0, **latency},
                "latency_note": "one query at a time: analyse + score every document (candidates or corpus) + top-k"}


class CrossRanker:
    def __init__(self, model: CrossEncoder, tokenizer, max_length: int, batch_size: int, device: torch.device, dtype):
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        self.max_length, self.batch_size = max_length, batch_size

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

    def rank(self, qids: list[str], fusion=None, depth: int | None = None, q_reps=None) -> Ranked:
        pairs = [(q, d) for q in qids for d in self.data.candidates[q]]
        scores = self.score_pairs(pairs)
        run: Run = {q: {} for q in qids}
        for (q, d), value in zip(pairs, scores.tolist()):
            run[q][d] = value
        return Ranked({"cross": run}, list(qids))

    def efficiency(self, data: RankingData, fusion=None, compute_flops: bool = True, ranked=None) -> dict:
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
        entry.update(query_latency({"cross": lambda q: self.rank([q])}, list(data.queries), self.device)["cross"])
        return {"corpus": {"documents": len(data.docs), "pairs": len(pairs), **peak_memory_mb(self.device)},
                "cross": entry,
                "latency_note": "one query at a time: score every candidate pair through the cross-encoder"}
