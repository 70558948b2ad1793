"""Rank a split with every scorer, write TREC runs, score them, save results/<split>.json.

Mode follows the data: a split with candidate lists is reranked (hetPQA, or the top of a
first-stage run), one without is retrieved from the whole corpus (BEIR). The rankers
(rankers.py) take plain settings; `build_ranker` reads them from the config.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError
from HybridPQA.evaluation.approximate import approximated_scorers, approximation
from HybridPQA.evaluation.metrics import (
    RERANK_METRICS,
    RETRIEVE_METRICS,
    per_source,
    score_run,
)
from HybridPQA.evaluation.rankers import BM25Ranker, CrossRanker, Ranker
from HybridPQA.data.trec import Run, read_trec, write_trec
from HybridPQA.files import file_digest, write_atomic
from HybridPQA.heads import DENSE, HYBRID, SPARSE, scorers
from HybridPQA.modeling import BM25, BiEncoder, CrossEncoder
from HybridPQA.modeling.encoding import build_encoding
from HybridPQA.modeling.kinds import model_kind
from HybridPQA.modeling.pretrained import build_encoder
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.engines import build_engine_settings
from HybridPQA.retrieval.fusion import tune
from HybridPQA.rundir import RunDir
from HybridPQA.scoring import Fusion, ranking

log = logging.getLogger(__name__)
TUNE_DEPTH = 10_000  # documents per query in the runs that tune the fusion (all of them up to this)


@dataclass(frozen=True)
class Evaluation:
    """What evaluating a split reads from the config, built once (`build_evaluation`)."""
    exp: str = "run"  # the TREC files' run tag
    dataset: str = ""
    depth: int = 100  # TOP_RETRIEVE_COUNT
    ignore_identical: bool = False  # DATA.IGNORE_IDENTICAL_IDS
    select_metric: str = "mrr@5"  # the metric FUSION.TUNE tunes for
    save_index: bool = True  # INDEX.SAVE: a retrieve split's index is kept in the run, searchable
    compute_flops: bool = True
    measure_cost: bool = True  # MEASURE_COST: FLOPs and latency at all
    config: str | None = None  # the merged config, saved with that index so search rebuilds the model


def build_evaluation(cfg: CfgNode) -> Evaluation:
    s = cfg.RETRIEVER.SOLVER
    return Evaluation(cfg.EXP, cfg.RETRIEVER.DATA.NAME, s.TOP_RETRIEVE_COUNT, cfg.RETRIEVER.DATA.IGNORE_IDENTICAL_IDS,
                      s.SELECT_METRIC, cfg.RETRIEVER.INDEX.SAVE, cfg.RETRIEVER.COMPUTE_FLOPS, cfg.RETRIEVER.MEASURE_COST,
                      cfg.dump())


def build_ranker(model: BiEncoder | CrossEncoder | BM25, tokenizer, cfg: CfgNode, device: torch.device, dtype):
    """The ranker of `model`'s type, with SOLVER's batch sizes and depth and the INDEX engines."""
    s = cfg.RETRIEVER.SOLVER
    if isinstance(model, BM25):
        return BM25Ranker(model, s.TOP_RETRIEVE_COUNT)
    if isinstance(model, CrossEncoder):
        return CrossRanker(model, tokenizer, build_encoding(cfg).max_length("pair"), s.TEST_CTX_BSZ, device, dtype)
    return Ranker(build_encoder(model, tokenizer, cfg, device, dtype), depth=s.TOP_RETRIEVE_COUNT,
                  engines=build_engine_settings(cfg))


def metric_names(data: RankingData) -> list[str]:
    """The metrics a split is scored with: recall@100 only where there is a corpus (or a first stage)."""
    return RERANK_METRICS if data.mode == "rerank" and data.first_stage is None else RETRIEVE_METRICS


def metrics_of(runs: dict[str, Run], data: RankingData) -> dict[str, dict[str, float]]:
    return {scorer: score_run(run, data.qrels, metric_names(data)) for scorer, run in runs.items()}


def tune_fusion(ranker: Ranker, data: RankingData, fusion: Fusion, metric: str, run_dir: RunDir | None) -> Fusion:
    """Tune ALPHA or RRF_K on this split with ranx, over runs of (up to TUNE_DEPTH of) every document."""
    qids = data.judged_qids()
    runs = ranker.rank(qids, fusion, depth=min(TUNE_DEPTH, len(data.docs))).runs
    tuned, trials = tune(runs[DENSE], runs[SPARSE], data.qrels, fusion, metric)
    log.info("fusion tuned on %s (%d queries, %s): %s -> %s", data.name, len(qids), metric, fusion.describe(),
             tuned.describe())
    if run_dir is not None:
        tuned.save(run_dir.fusion, tuned_on=data.name, metric=metric, trials=trials)
    return tuned


def evaluate_split(ranker, data: RankingData, settings: Evaluation, fusion: Fusion, run_dir: RunDir | Path | None = None,
                   split: str | None = None, with_efficiency: bool = True, tune_here: bool = False,
                   source: str | None = None) -> dict:
    """Rank, score and (with run_dir) write runs/<split>.<scorer>.trec, index/<split>/ and
    results/<split>.json. `tune_here` first tunes the fusion on this split (the val split).
    `source`, the model's checkpoint or name: index/<split>/ is searchable with it, and the scorer it
    searches with unless told (modeling.pretrained.ModelKind) is recorded for the tables.

    results/<split>.json is the mark of a complete evaluation: the old one is deleted first and the
    new one written last, with the sha256 of every run file it scored (`load_results` checks them),
    and the index is published by one rename; so a crash never leaves results of one model beside
    runs or an index of another."""
    split = split or data.name
    run_dir = RunDir.of(run_dir) if run_dir is not None else None
    default_scorer = None
    if source is not None and {DENSE, SPARSE} & set(getattr(ranker.model, "heads", ())):
        default_scorer, why = model_kind(source).default_scorer(ranker.model.heads)
        log.info("default scorer %s: %s", default_scorer, why)
    results_path = run_dir.results_file(split) if run_dir is not None else None
    if results_path is not None and results_path.exists():
        results_path.unlink()
    started = time.perf_counter()
    encoder = getattr(ranker, "encoder", None)
    tally = {side: list(counts) for side, counts in encoder.truncated.items()} if encoder is not None else None
    ranker.index(data)
    if tune_here and HYBRID in scorers(getattr(ranker.model, "heads", ())):
        fusion = tune_fusion(ranker, data, fusion, settings.select_metric, run_dir)
    depth = settings.depth + 1 if settings.ignore_identical else None  # one more, for the query's own id
    cut = (lambda runs: _drop_identical(runs, settings.depth)) if settings.ignore_identical else (lambda runs: runs)
    ranked = ranker.rank(list(data.queries), fusion, depth=depth)
    runs = cut(ranked.runs)
    files = _write_runs(ranker, data, ranked, runs, fusion, run_dir, split, settings, source, default_scorer) \
        if run_dir is not None else {}
    ranked.runs = runs
    if tally is not None:  # [texts cut at the max length, texts encoded] of this split, per side
        tally = {side: [c - tally.get(side, [0, 0])[0], n - tally.get(side, [0, 0])[1]] for side, (c, n) in encoder.truncated.items()}
    judged = data.judged_qids()
    results = {
        "split": split, "dataset": settings.dataset, "mode": data.mode,
        "fusion": asdict(fusion) | {"described": fusion.describe()},
        "first_stage": data.first_stage, "queries": len(data.queries), "queries_scored": len(judged),
        "queries_without_positive": len(data.queries) - len(judged),
        "documents": len(data.docs), "input_issues": len(data.issues),
        "metrics": metrics_of(runs, data), **({"default_scorer": default_scorer} if default_scorer in runs else {}),
        **({"truncated": tally} if tally is not None else {}),
        "seconds": time.perf_counter() - started,
    }
    with_efficiency = with_efficiency and settings.measure_cost
    if with_efficiency and getattr(ranker, "corpus", None) is not None and approximated_scorers(ranker.corpus):
        exact = CorpusIndex(ranker.corpus.indexes).search(ranked.query_reps, ranked.qids, fusion, depth or settings.depth)
        results["approximate"] = approximation(ranker.corpus, ranked, cut(exact), fusion, ranker.depth, data.qrels,
                                               metric_names(data), ranker.device)
    if data.mode == "rerank" and data.doc_source:
        results["per_source"] = {scorer: per_source(run, data, RERANK_METRICS) for scorer, run in runs.items()}
    if with_efficiency:
        results["efficiency"] = ranker.efficiency(data, fusion, settings.compute_flops, ranked)
    if results_path is not None:
        results["files"] = files
        results_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(results_path, json.dumps(finite(results), indent=2, allow_nan=False))
    return results


def _write_runs(ranker, data: RankingData, ranked, runs: dict[str, Run], fusion: Fusion, run_dir: RunDir, split: str,
                settings: Evaluation, source: str | None, default_scorer: str | None) -> dict[str, str]:
    """runs/<split>.<scorer>.trec, read back into `runs` (the metrics score what the files say), and
    index/<split>/ searchable with `source` -> {file: sha256}."""
    files = {}
    for scorer, run in runs.items():
        path = run_dir.run_file(split, scorer)
        write_trec(run, path, f"{settings.exp}.{scorer}")
        runs[scorer] = read_trec(path)
        files[run_dir.relative(path)] = file_digest(path)
    if data.mode == "retrieve" and settings.save_index and isinstance(ranker, Ranker) and ranker.reused is None:
        local = Path(source or "").expanduser()
        meta = {"model": str(local.resolve()) if source and local.exists() else source, "overrides": [],
                "encoding": asdict(ranker.encoding), "fusion": asdict(fusion), "default_scorer": default_scorer}
        ranker.save_indexes(run_dir, split, ranked, meta, settings.config)
    return files


def _drop_identical(runs: dict[str, Run], depth: int) -> dict[str, Run]:
    """DATA.IGNORE_IDENTICAL_IDS (BEIR's ignore_identical_ids): one more document was retrieved; a
    document whose id is the query's own is dropped, and runs are cut to depth."""
    return {scorer: {q: dict([(d, s) for d, s in ranking(docs) if d != q][:depth]) for q, docs in run.items()}
            for scorer, run in runs.items()}


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
    run_dir = RunDir.of_results(path)
    for name, digest in (results.get("files") or {}).items():
        file = run_dir / name
        if not file.is_file() or file_digest(file) != digest:
            raise InputError(f"{path}: {file} is missing or not the file these results scored (an interrupted or "
                             "later evaluation); rerun `hybridpqa evaluate ... --overwrite`")
    return results
