"""The two jobs run in a run directory (rundir.RunDir): train (then test), and evaluate.

Each is built from the config: data splits, first-stage reranking, hard negatives and teacher,
model, device and precision; then the training loop (engine.train) and the evaluation
(evaluation.evaluator) run on plain objects.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import torch
from yacs.config import CfgNode

from HybridPQA.data import (
    build_split,
    carve_val,
    find_split,
    rerank_split,
    with_hard_negatives,
)
from HybridPQA.data.readers import RankingData
from HybridPQA.data.training import TrainingSet, pseudo_queries
from HybridPQA.distributed import Distributed
from HybridPQA.engine.schedule import (
    build_optimizer,
    build_schedule,
    build_scheduler,
    gradient_checkpointing,
    resume_state,
    selection_value,
    vector_sizes,
)
from HybridPQA.engine.mlm_warmup import build_mlm_warmup, warm_up_mlm
from HybridPQA.engine.tracking import build_tracker
from HybridPQA.engine.train import Training, do_train
from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import build_evaluation, build_ranker, evaluate_split, metric_names
from HybridPQA.evaluation.explain import write_explanations
from HybridPQA.evaluation.rankers import Ranker
from HybridPQA.data.trec import read_trec
from HybridPQA.files import check_writable, write_atomic
from HybridPQA.losses import build_loss, check_objective
from HybridPQA.modeling import build_checkpointer, build_model
from HybridPQA.modeling.encoding import build_encoding
from HybridPQA.retrieval.corpus import open_index
from HybridPQA.modeling.pretrained import SavedModel
from HybridPQA.modeling.static import init_static_queries
from HybridPQA.precision import build_precision
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import build_device, seed_everything
from HybridPQA.scoring import Fusion, build_fusion

log = logging.getLogger("HybridPQA")


def _report_issues(data: RankingData) -> None:
    if data.issues:
        log.warning("%s: %d input problem(s) skipped or repaired; first: %s", data.name, len(data.issues),
                    "; ".join(data.issues[:3]))
    missing = len(data.queries) - len(data.judged_qids())
    if missing:
        log.info("%s: %d of %d questions have no positive and are left out of the metrics",
                 data.name, missing, len(data.queries))


def load_split(path_data: Path, rel: str | None, cfg: CfgNode) -> RankingData | None:
    if rel is None:
        return None
    data = build_split(Path(path_data) / rel, cfg.RETRIEVER.DATA, path_data)
    _report_issues(data)
    return data


def first_stage(data: RankingData | None, cfg: CfgNode, path_data: Path, split: str) -> RankingData | None:
    """RERANK.RUN: a corpus split becomes a rerank split over the run's top documents."""
    rerank = cfg.RETRIEVER.RERANK
    if rerank.RUN is None or data is None or data.candidates is not None:
        return data
    path = Path(path_data) / rerank.RUN.replace("{split}", split)
    data = rerank_split(data, read_trec(path), rerank.DEPTH, str(path))
    log.info("%s: reranking the top %d of %s (%d documents)", data.name, rerank.DEPTH, path, len(data.docs))
    return data


def training_set(train: RankingData, cfg: CfgNode, path_data: Path) -> tuple[TrainingSet, dict | None]:
    """Batches with hard negatives from HARD_NEGATIVES_RUN, else from the DISTILL.TEACHER_RUN
    documents, else the data's own candidates; and the teacher run (or None)."""
    d, teacher = cfg.RETRIEVER.DATA, None
    negatives = d.HARD_NEGATIVES_RUN or cfg.RETRIEVER.DISTILL.TEACHER_RUN
    if cfg.RETRIEVER.DISTILL.TEACHER_RUN:
        teacher = read_trec(Path(path_data) / cfg.RETRIEVER.DISTILL.TEACHER_RUN)
    if negatives:
        path = Path(path_data) / negatives
        run = teacher if negatives == cfg.RETRIEVER.DISTILL.TEACHER_RUN else read_trec(path)
        train = with_hard_negatives(train, run, d.HARD_NEGATIVES_DEPTH, str(path))
    m = cfg.RETRIEVER.MODEL
    targets = pseudo_queries(train, m.I3.TARGETS) if m.IMPLICIT_INTERACTION else None
    if targets is not None:
        log.info("I3: %d of %d training contexts have a reconstruction target (%s)", len(targets), len(train.docs),
                 m.I3.TARGETS)
    return TrainingSet(train, cfg.RETRIEVER.SOLVER.TRAIN_BATCH_SIZE, d.NUM_POSITIVE_CONTEXTS, d.NUM_TOTAL_CONTEXTS,
                       cfg.SEED, targets), teacher


def checkpoint_bytes(model: torch.nn.Module, cfg: CfgNode) -> int:
    """Disk a run's checkpoints need: CP_SAVE_LIMIT best copies, last and its temporary copy, and the
    optimizer's two moments in each of those two."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params * (cfg.RETRIEVER.SOLVER.CP_SAVE_LIMIT + 2 * 3)


def build_validation(ranker, val: RankingData, cfg: CfgNode):
    """validate(model) -> (SELECT_METRIC of the hybrid, or of the only scorer; {scorer: metrics}) on the
    val split, through the same ranker evaluation uses (it encodes with the model being trained)."""
    settings, fusion, metric = build_evaluation(cfg), build_fusion(cfg), cfg.RETRIEVER.SOLVER.SELECT_METRIC

    def validate(model) -> tuple[float, dict]:
        results = evaluate_split(ranker, val, settings, fusion, with_efficiency=False)
        return selection_value(results, metric), results["metrics"]
    return validate


def build_training(cfg: CfgNode, run_dir: RunDir, model, tokenizer, train_set: TrainingSet, val: RankingData | None,
                   device: torch.device, dtype, teacher: dict | None, resume: bool, ranks: Distributed | None) -> Training:
    """The loop's objects: loss, optimizer, schedule, checkpointer, tracker, validation, and the
    state of checkpoints/last when resuming."""
    s = cfg.RETRIEVER.SOLVER
    model.to(device)  # before the optimizer, so a restored state lands on the parameters' device
    loss = build_loss(cfg, vector_sizes(model)).to(device)
    if s.GRADIENT_CHECKPOINTING:
        gradient_checkpointing(model)
    optimizer = build_optimizer(model, s.OPTIMIZER, loss)
    scheduler = build_scheduler(optimizer, s.OPTIMIZER.WARMUP_STEPS, s.TOTAL_TRAIN_STEPS)
    main = ranks is None or ranks.main
    validate = build_validation(build_ranker(model, tokenizer, cfg, device, dtype), val, cfg) \
        if val is not None and main else None
    training = Training(model, tokenizer, train_set, loss, optimizer, scheduler, build_schedule(cfg),
                        build_encoding(cfg), build_checkpointer(cfg, tokenizer), None, validate, teacher)
    if resume:
        training.state = resume_state(run_dir, model, optimizer, scheduler, loss, ranks.rank if ranks else None,
                                      ranks.world_size if ranks else 1)
        log.info("resumed at step %d (epoch %d, batch %d)", training.state["step"], training.state["epoch"],
                 training.state["batch"])
    training.tracker = build_tracker(run_dir, cfg, enabled=main)  # metrics.jsonl and LOG.BACKENDS
    return training


def train_and_val(cfg: CfgNode, path_data: Path) -> tuple[RankingData | None, RankingData | None]:
    """The training split (when training or carving from it) and the val split: read, or carved from
    the training data (VAL_FROM_TRAIN), then reranked over a first stage (RERANK.RUN)."""
    d = cfg.RETRIEVER.DATA
    if cfg.RETRIEVER.DO_TRAIN:  # the training runs too, before anything loads
        for key, name in (("RETRIEVER.DATA.HARD_NEGATIVES_RUN", d.HARD_NEGATIVES_RUN),
                          ("RETRIEVER.DISTILL.TEACHER_RUN", cfg.RETRIEVER.DISTILL.TEACHER_RUN)):
            if name and not (Path(path_data) / name).is_file():
                raise InputError(f"config: {key} = {name!r}: no such file in {path_data}; mine one first "
                                 "(`hybridpqa evaluate` writes runs/<split>.<scorer>.trec, `hybridpqa mine`), or set "
                                 "it None")
    val = load_split(path_data, d.VAL_DATA_PATH, cfg)
    train = load_split(path_data, d.TRAIN_DATA_PATH, cfg) if cfg.RETRIEVER.DO_TRAIN or d.VAL_FROM_TRAIN else None
    if d.VAL_FROM_TRAIN:
        if train is None:
            raise InputError("config: RETRIEVER.DATA.VAL_FROM_TRAIN needs RETRIEVER.DATA.TRAIN_DATA_PATH")
        train, val = carve_val(train, d.VAL_FROM_TRAIN)
        log.info("val split carved from %s: %d questions (train keeps %d)", d.TRAIN_DATA_PATH, len(val.queries),
                 len(train.queries))
    val = first_stage(val, cfg, path_data, "dev")
    select = cfg.RETRIEVER.SOLVER.SELECT_METRIC
    if cfg.RETRIEVER.DO_TRAIN and val is not None:  # what the first validation needs, checked before step 1
        where = (f"the val split carved from {d.TRAIN_DATA_PATH} by RETRIEVER.DATA.VAL_FROM_TRAIN = {d.VAL_FROM_TRAIN}"
                 if d.VAL_FROM_TRAIN else f"the val split {d.VAL_DATA_PATH}")
        if not val.judged_qids():
            raise InputError(f"config: {where} has {len(val.queries)} questions and none with a judged relevant "
                             "document, so the best checkpoint cannot be chosen; give more training pairs, raise "
                             "VAL_FROM_TRAIN, or set RETRIEVER.DATA.VAL_DATA_PATH")
        if select not in metric_names(val):
            raise InputError(f"config: RETRIEVER.SOLVER.SELECT_METRIC = {select!r} is not computed on {where} "
                             f"({val.mode}: {', '.join(metric_names(val))}); choose one of those")
    if cfg.RETRIEVER.DO_TRAIN and train is not None and not train.judged_qids():
        raise InputError(f"config: {d.TRAIN_DATA_PATH} leaves no training question with a relevant document"
                         + (" after the val split is carved off; lower RETRIEVER.DATA.VAL_FROM_TRAIN" if d.VAL_FROM_TRAIN
                            else ""))
    return train, val


def train_and_test(cfg: CfgNode, run_dir: RunDir | Path, path_data: Path, resume: bool = False,
                   stop_at_step: int | None = None, ranks: Distributed | None = None) -> dict[str, dict]:
    """DO_TRAIN then DO_TEST as configured; returns {split: results}. Under torchrun (`ranks`) every
    rank trains; rank 0 alone writes and evaluates."""
    d, m, run_dir = cfg.RETRIEVER.DATA, cfg.RETRIEVER.MODEL, RunDir.of(run_dir)
    if cfg.RETRIEVER.DO_TRAIN and cfg.RETRIEVER.MODEL.BIENCODER_TYPE != "cross":
        check_objective(cfg.RETRIEVER.SOLVER)  # before anything loads
    main = ranks is None or ranks.main
    device = build_device(cfg, ranks)
    seed_everything(cfg.SEED + (ranks.rank if ranks else 0))  # own dropout masks per rank
    if main:
        write_atomic(run_dir.config, cfg.dump())
    train, val = train_and_val(cfg, path_data)  # the data is read and checked before any model loads
    model, tokenizer = build_model(cfg)
    dtype = build_precision(cfg, device, model)
    if cfg.RETRIEVER.DO_TRAIN and main and isinstance(model, torch.nn.Module):
        check_writable(run_dir.checkpoints, checkpoint_bytes(model, cfg))
    best, checkpointer = None, None  # the checkpoint chosen on the val split, when training
    if cfg.RETRIEVER.DO_TRAIN:
        if train is None:
            raise InputError("config: RETRIEVER.DO_TRAIN is True but RETRIEVER.DATA.TRAIN_DATA_PATH is None")
        train_set, teacher = training_set(train, cfg, path_data)
        if not resume and cfg.RETRIEVER.MODEL.QUERY_ENCODER == "static":  # term weights start from the IDF
            init_static_queries(model, tokenizer, list(train_set.data.docs.values()),
                                cfg.RETRIEVER.MODEL.CONTEXT_MAX_LENGTH)
        warmup = build_mlm_warmup(cfg)
        if not resume and warmup.steps:  # every rank alike (same seed, same batches)
            texts = [*train_set.data.queries.values(), *train_set.data.docs.values()]
            warm_up_mlm(model.to(device), tokenizer, texts, warmup, device, dtype, cfg.SEED)
        training = build_training(cfg, run_dir, model, tokenizer, train_set, val, device, dtype, teacher, resume, ranks)
        checkpointer = training.checkpointer
        best = do_train(training, run_dir, device, dtype, ranks, stop_at_step)
        if stop_at_step is not None and stop_at_step < cfg.RETRIEVER.SOLVER.TOTAL_TRAIN_STEPS or not main:
            return {}  # interrupted on purpose (checkpoints/last is there to --resume from), or not rank 0
        model, tokenizer, device, dtype = SavedModel(best).load(cfg)  # the chosen checkpoint, as any other is loaded
        log.info("evaluating %s", best)
    results = {}
    if cfg.RETRIEVER.DO_TEST:
        if isinstance(model, torch.nn.Module):
            model.to(device)  # loaded above, or built untrained (DO_TRAIN False)
        ranker, settings = build_ranker(model, tokenizer, cfg, device, dtype), build_evaluation(cfg)
        fusion = build_fusion(cfg)  # FUSION.TUNE: tuned on the val split, then used for every split
        test = first_stage(load_split(path_data, d.TEST_DATA_PATH, cfg), cfg, path_data, "test")
        for split, data in (("dev", val), ("test", test)):
            if data is not None:
                results[split] = evaluate_split(ranker, data, settings, fusion, run_dir, split,
                                                tune_here=split == "dev" and cfg.RETRIEVER.FUSION.TUNE,
                                                source=str(best or m.MODEL_PATH or m.PRETRAINED_MODEL_TYPE))
                fusion = Fusion.from_dict(results[split]["fusion"])
                if best is not None:
                    checkpointer.describe(best, fusion, results)  # its model card, and the fusion to search with
                if cfg.RETRIEVER.VISUALIZE and split == "test" and isinstance(ranker, Ranker):
                    runs = {scorer: read_trec(run_dir.run_file(split, scorer)) for scorer in results[split]["metrics"]}
                    write_explanations(ranker.encoder, data, runs, fusion, run_dir.explain_dir(split))
    return results


def evaluate_only(cfg: CfgNode, run_dir: RunDir | Path, path_data: Path, checkpoint: str | None, split: str | None,
                  overwrite: bool = False, index: Path | None = None) -> dict[str, dict]:
    """Evaluate a checkpoint, or PRETRAINED_MODEL_TYPE zero-shot, on one split, with the checkpoint's
    fusion (modeling.pretrained.SavedModel: its own, else its run's tuned fusion.json, else the config's);
    the split's documents from the saved `index` of this model where given, else encoded."""
    run_dir = RunDir.of(run_dir)
    if split is None and cfg.RETRIEVER.DATA.TEST_DATA_PATH is None:
        raise InputError("evaluate: give --split=NAME, or set RETRIEVER.DATA.TEST_DATA_PATH")
    name = split or Path(cfg.RETRIEVER.DATA.TEST_DATA_PATH or "test").stem
    path = find_split(path_data, split) if split else Path(path_data) / cfg.RETRIEVER.DATA.TEST_DATA_PATH
    target = run_dir.results_file(name)
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass --overwrite to replace it")
    seed_everything(cfg.SEED)
    write_atomic(run_dir.eval_config(name) if run_dir.config.exists() else run_dir.config, cfg.dump())
    source = checkpoint or cfg.RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE
    if checkpoint or cfg.RETRIEVER.MODEL.BIENCODER_TYPE != "bm25":  # the one loader (BM25 loads no model)
        saved = SavedModel(source)
        model, tokenizer, device, dtype = saved.load(cfg)
        fusion = saved.fusion(cfg)
    else:
        device, (model, tokenizer), fusion = build_device(cfg), build_model(cfg), build_fusion(cfg)
        dtype = build_precision(cfg, device, model)
    if cfg.RETRIEVER.FUSION.TUNE and fusion == build_fusion(cfg):
        log.warning("RETRIEVER.FUSION.TUNE: nothing tuned to use (the checkpoint records no tuned fusion); "
                    "the configured ALPHA / RRF_K are used")
    log.info("hybrid fusion: %s", fusion.describe())
    data = first_stage(build_split(path, cfg.RETRIEVER.DATA, path_data), cfg, path_data, name)
    _report_issues(data)
    if not checkpoint and cfg.RETRIEVER.MODEL.QUERY_ENCODER == "static":  # zero-shot: this corpus's IDF, as BM25
        init_static_queries(model, tokenizer, list(data.docs.values()), cfg.RETRIEVER.MODEL.CONTEXT_MAX_LENGTH)
    log.info("evaluating %s on %s (%s, %d queries)", checkpoint or cfg.RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE,
             path, data.mode, len(data.queries))
    if isinstance(model, torch.nn.Module):
        model.to(device)
    ranker = build_ranker(model, tokenizer, cfg, device, dtype)
    if index is not None:
        ranker.use_index(open_index(index, source, asdict(build_encoding(cfg)), list(data.docs), ranker.engines))
    return {name: evaluate_split(ranker, data, build_evaluation(cfg), fusion, run_dir, name, source=source)}
