"""Rank a split with every scorer, write TREC runs, score them, save results/<split>.json.

Mode follows the data: a split with candidate lists is reranked (hetPQA, or the top of a
first-stage run), one without is retrieved from the whole corpus (BEIR) through a SparseIndex and
a DenseIndex. Bi-encoder scorers: dense, sparse, hybrid and late (MaxSim, rerank only); BM25 and
the cross-encoder have their own rankers (rankers.py). The hybrid is fused from the dense and sparse scores of *every* document
of a query (its candidates, or the whole corpus, queries taken in chunks), then cut to the
depth: it is exact at any depth for linear fusion, any normalisation, and RRF.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData
from HybridPQA.engine.runtime import progress
from HybridPQA.errors import InputError
from HybridPQA.evaluation.efficiency import efficiency
from HybridPQA.evaluation.encode import encode, normalized, pair_scores
from HybridPQA.evaluation.metrics import (
    RERANK_METRICS,
    RETRIEVE_METRICS,
    per_source,
    score_run,
)
from HybridPQA.evaluation.rankers import BM25Ranker, CrossRanker
from HybridPQA.evaluation.trec import Run, read_trec, write_trec
from HybridPQA.files import disk_error, file_digest, publish_dir, write_atomic
from HybridPQA.modeling import BM25, BiEncoder, CrossEncoder
from HybridPQA.retrieval.fusion import Fusion, fuse_scores, fusion_from_cfg, tune
from HybridPQA.retrieval.index import DenseIndex, SparseIndex, save_queries, top_k

log = logging.getLogger(__name__)
QUERY_CHUNK = 256  # queries scored against the whole corpus at once: (chunk, N) float32 per head
TUNE_DEPTH = 10_000  # documents per query in the runs that tune the fusion (all of them up to this)


class Ranker:
    """Encodes a split's documents once, then ranks queries against them with every scorer."""

    def __init__(self, model: BiEncoder, tokenizer, cfg: CfgNode, device: torch.device, dtype):
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        self.cfg, self.m, self.s = cfg, cfg.RETRIEVER.MODEL, cfg.RETRIEVER.SOLVER

    def encode(self, side: str, texts: list[str], batch_size: int | None = None):
        max_len = self.m.QUESTION_MAX_LENGTH if side == "query" else self.m.CONTEXT_MAX_LENGTH
        batch_size = batch_size or (self.s.TEST_BATCH_SIZE if side == "query" else self.s.TEST_CTX_BSZ)
        reps = encode(self.model, self.tokenizer, side, texts, max_len, batch_size, self.device, self.dtype)
        return normalized(reps) if self.s.FUNC == "cosine" else reps

    def index(self, data: RankingData) -> None:
        """Encode every document (timed); in retrieve mode, build the corpus indexes."""
        if data.candidates is None and "late" in self.model.heads:
            raise InputError(f"{data.name}: late interaction reranks candidates and this split has none; set "
                             "RETRIEVER.RERANK.RUN to a first-stage run (e.g. BM25's runs/{split}.bm25.trec)")
        self.data, self.docids = data, list(data.docs)
        self.row = {d: i for i, d in enumerate(self.docids)}
        log.info("%s: encoding %d documents (%s)", data.name, len(self.docids), str(self.dtype or torch.float32))
        started = time.perf_counter()
        self.doc_reps = self.encode("context", [data.docs[d] for d in self.docids])
        self.encode_seconds = time.perf_counter() - started
        log.info("%s: encoded %d documents in %.1f s (%.1f docs/s)", data.name, len(self.docids), self.encode_seconds,
                 len(self.docids) / max(self.encode_seconds, 1e-9))
        self.indexes: dict[str, SparseIndex | DenseIndex] = {}
        builders = {"sparse": lambda reps: SparseIndex.build(reps, self.docids),
                    "dense": lambda reps: DenseIndex.build(reps, self.docids, self.cfg.RETRIEVER.INDEX.DENSE)}
        for head in progress([h for h in builders if h in self.doc_reps], desc="index", unit="index"):
            self.indexes[head] = builders[head](self.doc_reps[head])

    def head_scores(self, q_reps, qids: list[str]):
        """Yield (query rows, {head: scores}) with every document of each query: (Q, N) matrices
        over the corpus, or in rerank mode one (1, n) row per query over its candidates."""
        if self.data.candidates is None:
            for start in progress(range(0, len(qids), QUERY_CHUNK), desc="search", unit="chunk",
                                  enabled=len(qids) > QUERY_CHUNK):
                rows = slice(start, start + QUERY_CHUNK)
                yield list(range(len(qids)))[rows], {h: self.indexes[h].scores(q_reps[h][rows]) for h in q_reps}
        else:
            q_index = np.array([i for i, q in enumerate(qids) for _ in self.data.candidates[q]], dtype=np.int64)
            d_index = np.array([self.row[d] for q in qids for d in self.data.candidates[q]], dtype=np.int64)
            flat = pair_scores(q_reps, self.doc_reps, q_index, d_index)
            bounds = np.searchsorted(q_index, np.arange(len(qids) + 1))
            for i in range(len(qids)):
                yield [i], {h: v[None, bounds[i]:bounds[i + 1]] for h, v in flat.items()}

    def _columns(self, qid: str) -> list[str]:
        return self.docids if self.data.candidates is None else self.data.candidates[qid]

    def rank(self, qids: list[str], fusion: Fusion, depth: int | None = None, q_reps=None) -> dict[str, Run]:
        """{scorer: run} for `qids`, each query's top `depth` (default TOP_RETRIEVE_COUNT; rerank
        mode keeps every candidate)."""
        q_reps = q_reps or self.encode("query", [self.data.queries[q] for q in qids])
        self.query_reps = q_reps
        depth = depth or self.s.TOP_RETRIEVE_COUNT
        runs: dict[str, Run] = {}
        for rows, scores in self.head_scores(q_reps, qids):
            if {"dense", "sparse"} <= set(scores):
                scores = {"hybrid": fuse_scores(scores["dense"], scores["sparse"], fusion), **scores}
            for scorer, matrix in scores.items():
                run = runs.setdefault(scorer, {})
                index, values = top_k(matrix, depth if self.data.candidates is None else matrix.shape[1])
                for row, cols, vals in zip(rows, index, values.tolist()):
                    columns = self._columns(qids[row])
                    run[qids[row]] = {columns[c]: v for c, v in zip(cols, vals)}
        dense = self.indexes.get("dense")
        if self.data.candidates is None and dense is not None and dense.faiss is not None:
            index, values = dense.search(q_reps["dense"], depth)  # the same exact scores, from FAISS
            runs["dense"] = {q: {self.docids[c]: v for c, v in zip(cols, vals)}
                             for q, cols, vals in zip(qids, index, values.tolist())}
        return runs

    def efficiency(self, data: RankingData, fusion: Fusion, compute_flops: bool) -> dict:
        return efficiency(self, data, fusion, compute_flops)

    def save_indexes(self, path: Path, qids: list[str]) -> None:
        """index/<split>/{sparse,dense}/, with the vocabulary and the split's sparse queries, written
        into index/<split>.tmp and published whole by one rename."""
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for head, index in self.indexes.items():
                if head == "sparse":
                    index.terms = self.tokenizer.convert_ids_to_tokens(list(range(index.by_term.shape[1])))
                index.save(tmp / head)
                if head == "sparse":
                    save_queries(tmp / head, qids, self.query_reps["sparse"])
        except OSError as err:
            raise disk_error(tmp, err) from None
        publish_dir(tmp, path)


def build_ranker(model: BiEncoder | CrossEncoder | BM25, tokenizer, cfg: CfgNode, device: torch.device, dtype):
    if isinstance(model, BM25):
        return BM25Ranker(model, cfg)
    if isinstance(model, CrossEncoder):
        return CrossRanker(model, tokenizer, cfg, device, dtype)
    return Ranker(model, tokenizer, cfg, device, dtype)


def metric_names(data: RankingData) -> list[str]:
    """The metrics a split is scored with: recall@100 only where there is a corpus (or a first stage)."""
    return RERANK_METRICS if data.mode == "rerank" and data.first_stage is None else RETRIEVE_METRICS


def metrics_of(runs: dict[str, Run], data: RankingData) -> dict[str, dict[str, float]]:
    return {scorer: score_run(run, data.qrels, metric_names(data)) for scorer, run in runs.items()}


def tune_fusion(ranker: Ranker, data: RankingData, fusion: Fusion, metric: str, run_dir: Path | None) -> Fusion:
    """Tune ALPHA or RRF_K on this split with ranx, over runs of (up to TUNE_DEPTH of) every document."""
    qids = data.judged_qids()
    q_reps = ranker.encode("query", [data.queries[q] for q in qids])
    runs = ranker.rank(qids, fusion, depth=min(TUNE_DEPTH, len(data.docs)), q_reps=q_reps)
    tuned, trials = tune(runs["dense"], runs["sparse"], data.qrels, fusion, metric)
    log.info("fusion tuned on %s (%d queries, %s): %s -> %s", data.name, len(qids), metric, fusion.describe(),
             tuned.describe())
    if run_dir is not None:
        tuned.save(run_dir / "fusion.json", tuned_on=data.name, metric=metric, trials=trials)
    return tuned


def evaluate_split(model: BiEncoder | CrossEncoder | BM25, tokenizer, data: RankingData, cfg: CfgNode, device: torch.device, dtype,
                   run_dir: Path | None = None, split: str | None = None, with_efficiency: bool = True,
                   fusion: Fusion | None = None, tune_here: bool = False) -> dict:
    """Rank, score and (with run_dir) write runs/<split>.<scorer>.trec, index/<split>/ and
    results/<split>.json. `tune_here` first tunes the fusion on this split (the val split).

    results/<split>.json is the mark of a complete evaluation: the old one is deleted first and the
    new one written last, with the sha256 of every run file it scored (`load_results` checks them),
    and the index is published by one rename; so a crash never leaves results of one model beside
    runs or an index of another."""
    split = split or data.name
    results_path = run_dir / "results" / f"{split}.json" if run_dir is not None else None
    if results_path is not None and results_path.exists():
        results_path.unlink()
    ranker = build_ranker(model, tokenizer, cfg, device, dtype)
    started = time.perf_counter()
    ranker.index(data)
    fusion = fusion or fusion_from_cfg(cfg)
    if tune_here and set(model.heads) == {"dense", "sparse"}:
        fusion = tune_fusion(ranker, data, fusion, cfg.RETRIEVER.SOLVER.SELECT_METRIC, run_dir)
    runs = ranker.rank(list(data.queries), fusion)
    files = {}
    if run_dir is not None:  # score what the TREC files say, so the files and the metrics agree
        for scorer, run in runs.items():
            write_trec(run, run_dir / "runs" / f"{split}.{scorer}.trec", f"{cfg.EXP}.{scorer}")
            runs[scorer] = read_trec(run_dir / "runs" / f"{split}.{scorer}.trec")
            files[f"runs/{split}.{scorer}.trec"] = file_digest(run_dir / "runs" / f"{split}.{scorer}.trec")
        if data.mode == "retrieve" and cfg.RETRIEVER.INDEX.SAVE and isinstance(ranker, Ranker):
            ranker.save_indexes(run_dir / "index" / split, list(data.queries))
    judged = data.judged_qids()
    results = {
        "split": split, "dataset": cfg.RETRIEVER.DATA.NAME, "mode": data.mode,
        "fusion": asdict(fusion) | {"described": fusion.describe()},
        "first_stage": data.first_stage, "queries": len(data.queries), "queries_scored": len(judged),
        "queries_without_positive": len(data.queries) - len(judged),
        "documents": len(data.docs), "input_issues": len(data.issues),
        "metrics": metrics_of(runs, data),
        "seconds": time.perf_counter() - started,
    }
    if data.mode == "rerank" and data.doc_source:
        results["per_source"] = {scorer: per_source(run, data, RERANK_METRICS) for scorer, run in runs.items()}
    if with_efficiency:
        results["efficiency"] = ranker.efficiency(data, fusion, cfg.RETRIEVER.COMPUTE_FLOPS)
    if results_path is not None:
        results["files"] = files
        results_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(results_path, json.dumps(finite(results), indent=2, allow_nan=False))
    return results


def finite(value):
    """`value` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def load_results(path: Path) -> dict:
    """results/<split>.json, checked against the run files it names: a one-line error when one is
    missing or was written by another evaluation."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: unreadable results ({err.__class__.__name__}); rerun the evaluation") from None
    run_dir = Path(path).parent.parent
    for name, digest in (results.get("files") or {}).items():
        file = run_dir / name
        if not file.is_file() or file_digest(file) != digest:
            raise InputError(f"{path}: {file} is missing or not the file these results scored (an interrupted or "
                             "later evaluation); rerun `hybridpqa evaluate ... --overwrite`")
    return results
