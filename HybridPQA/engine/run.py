"""A run directory that describes itself, and the two jobs run in it: train and evaluate.

<path_output>/<EXP>/
    config.yaml  log.txt  metrics.jsonl  checkpoints/  runs/<split>.<scorer>.trec  results/<split>.json
"""
from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import transformers
from yacs.config import CfgNode

from HybridPQA.data import (
    build_split,
    carve_val,
    find_split,
    rerank_split,
    with_hard_negatives,
)
from HybridPQA.data.readers import RankingData
from HybridPQA.data.training import TrainingSet
from HybridPQA.engine.distributed import Distributed
from HybridPQA.engine.runtime import build_device, build_precision, seed_everything
from HybridPQA.engine.train import do_train
from HybridPQA.errors import InputError
from HybridPQA.files import LOCK_NAME, check_writable
from HybridPQA.evaluation.evaluator import evaluate_split, metric_names
from HybridPQA.evaluation.trec import read_trec
from HybridPQA.files import write_atomic
from HybridPQA.modeling import build_model
from HybridPQA.retrieval.fusion import Fusion

log = logging.getLogger("HybridPQA")


RUN_FILES = {LOCK_NAME, "log.txt", ".write-test"}  # what a run directory holds before its config.yaml


def run_dir_of(path_output: str | Path, cfg: CfgNode) -> Path:
    """<path_output>/<EXP>: EXP is one validated folder name, so this is always inside path_output."""
    run_dir = Path(path_output) / cfg.EXP
    if run_dir.is_symlink() or run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"{run_dir}: exists and is not a run directory (a file or a link); choose another EXP")
    return run_dir


def prepare_run_dir(path_output: str | Path, cfg: CfgNode, overwrite: bool = False, resume: bool = False) -> Path:
    """<path_output>/<EXP>; refuses a non-empty one unless overwrite or resume. --overwrite empties
    only a HybridPQA run directory (one with a config.yaml), keeping its lock file."""
    run_dir = run_dir_of(path_output, cfg)
    contents = [p for p in run_dir.iterdir() if p.name != LOCK_NAME] if run_dir.is_dir() else []
    if contents:
        if overwrite:
            if not (run_dir / "config.yaml").is_file() and not {p.name for p in contents} <= RUN_FILES:
                raise InputError(f"{run_dir}: --overwrite replaces HybridPQA runs only, and this directory has no "
                                 "config.yaml; move it away yourself or choose another EXP")
            for path in contents:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        elif resume:
            saved = run_dir / "config.yaml"
            diff = _diff(CfgNode.load_cfg(saved.read_text()), cfg) if saved.is_file() else []
            if diff:
                raise InputError(f"{saved}: --resume needs the same config; these keys differ: {', '.join(diff)}")
        else:
            raise InputError(f"{run_dir} is not empty; pass --overwrite to replace it or --resume to continue it")
    elif resume:
        raise InputError(f"{run_dir}: nothing to resume; run without --resume")
    check_writable(run_dir)
    return run_dir


def _diff(a: CfgNode, b: CfgNode, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb and not (isinstance(va, (list, tuple)) and list(va) == list(vb or [])):
            out.append(f"{prefix}{key} ({va!r} -> {vb!r})")
    return out


def setup_logging(run_dir: Path | None = None, main: bool = True) -> None:
    """Console and (with a run directory) log.txt; called by the command line, never at import.
    Ranks other than 0 (`main` False) log warnings and errors to the console only."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if main else logging.WARNING)
    run_dir = run_dir if main else None
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None:
        handlers.append(logging.FileHandler(run_dir / "log.txt"))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    for noisy in ("transformers", "httpx", "urllib3", "numba", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def log_environment(argv: list[str] | None) -> None:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    log.info("argv: %s", " ".join(argv or sys.argv))
    log.info("python %s, torch %s, transformers %s, %s, git %s", platform.python_version(), torch.__version__,
             transformers.__version__, platform.platform(), commit or "unknown")


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
    data = build_split(Path(path_data) / rel, cfg.RETRIEVER.DATA)
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
    return TrainingSet(train, cfg.RETRIEVER.SOLVER.TRAIN_BATCH_SIZE, d.NUM_POSITIVE_CONTEXTS, d.NUM_TOTAL_CONTEXTS,
                       cfg.SEED), teacher


def write_config(run_dir: Path, cfg: CfgNode, name: str = "config.yaml") -> None:
    write_atomic(run_dir / name, cfg.dump())


def checkpoint_bytes(model: torch.nn.Module, cfg: CfgNode) -> int:
    """Disk a run's checkpoints need: CP_SAVE_LIMIT best copies, last and its temporary copy, and the
    optimizer's two moments in each of those two."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params * (cfg.RETRIEVER.SOLVER.CP_SAVE_LIMIT + 2 * 3)


def train_and_test(cfg: CfgNode, run_dir: Path, path_data: Path, resume: bool = False,
                   stop_at_step: int | None = None, ranks: Distributed | None = None) -> dict[str, dict]:
    """DO_TRAIN then DO_TEST as configured; returns {split: results}. Under torchrun (`ranks`) every
    rank trains; rank 0 alone writes and evaluates."""
    d = cfg.RETRIEVER.DATA
    main = ranks is None or ranks.main
    device = build_device(cfg, ranks)
    seed_everything(cfg.SEED + (ranks.rank if ranks else 0))  # own dropout masks per rank
    if main:
        write_config(run_dir, cfg)
    model, tokenizer = build_model(cfg)
    dtype = build_precision(cfg, device, model)
    if cfg.RETRIEVER.DO_TRAIN and main and isinstance(model, torch.nn.Module):
        check_writable(run_dir / "checkpoints", checkpoint_bytes(model, cfg))
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
    if cfg.RETRIEVER.DO_TRAIN and val is not None and select not in metric_names(val):
        raise InputError(f"config: RETRIEVER.SOLVER.SELECT_METRIC = {select!r} is not computed on the val split "
                         f"{val.name} ({val.mode}: {', '.join(metric_names(val))}); choose one of those")
    if cfg.RETRIEVER.DO_TRAIN:
        if train is None:
            raise InputError("config: RETRIEVER.DO_TRAIN is True but RETRIEVER.DATA.TRAIN_DATA_PATH is None")
        train_set, teacher = training_set(train, cfg, path_data)
        best = do_train(cfg, run_dir, model, tokenizer, train_set, val, device, dtype, resume, stop_at_step, teacher,
                        ranks)
        if stop_at_step is not None and stop_at_step < cfg.RETRIEVER.SOLVER.TOTAL_TRAIN_STEPS or not main:
            return {}  # interrupted on purpose (checkpoints/last is there to --resume from), or not rank 0
        model, tokenizer = build_model(cfg, checkpoint=best)
        log.info("evaluating %s", best)
    results = {}
    if cfg.RETRIEVER.DO_TEST:
        if isinstance(model, torch.nn.Module):
            model.to(device)
        fusion = None  # FUSION.TUNE: tuned on the val split, then used for every split
        test = first_stage(load_split(path_data, d.TEST_DATA_PATH, cfg), cfg, path_data, "test")
        for split, data in (("dev", val), ("test", test)):
            if data is not None:
                results[split] = evaluate_split(model, tokenizer, data, cfg, device, dtype, run_dir, split,
                                                fusion=fusion, tune_here=split == "dev" and cfg.RETRIEVER.FUSION.TUNE)
                fusion = Fusion.from_dict(results[split]["fusion"])
                if cfg.RETRIEVER.VISUALIZE and split == "test":
                    from HybridPQA.evaluation.explain import write_explanations

                    write_explanations(model, tokenizer, data, {sc: read_trec(run_dir / "runs" / f"{split}.{sc}.trec")
                                                                 for sc in results[split]["metrics"]},
                                       cfg, device, fusion, run_dir / "results" / f"{split}.explain", dtype)
    return results


def evaluate_only(cfg: CfgNode, run_dir: Path, path_data: Path, checkpoint: str | None, split: str | None,
                  overwrite: bool = False) -> dict[str, dict]:
    """Evaluate a checkpoint, or PRETRAINED_MODEL_TYPE zero-shot, on one split."""
    if split is None and cfg.RETRIEVER.DATA.TEST_DATA_PATH is None:
        raise InputError("evaluate: give --split=NAME, or set RETRIEVER.DATA.TEST_DATA_PATH")
    name = split or Path(cfg.RETRIEVER.DATA.TEST_DATA_PATH or "test").stem
    path = find_split(path_data, split) if split else Path(path_data) / cfg.RETRIEVER.DATA.TEST_DATA_PATH
    target = run_dir / "results" / f"{name}.json"
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass --overwrite to replace it")
    device = build_device(cfg)
    seed_everything(cfg.SEED)
    write_config(run_dir, cfg, "config.yaml" if not (run_dir / "config.yaml").exists() else f"config.eval.{name}.yaml")
    model, tokenizer = build_model(cfg, checkpoint=checkpoint)
    dtype = build_precision(cfg, device, model)
    fusion = None
    tuned = Path(checkpoint).parent.parent / "fusion.json" if checkpoint else None
    if tuned is not None and tuned.is_file():
        fusion = Fusion.load(tuned)
        log.info("hybrid fusion from %s: %s", tuned, fusion.describe())
    elif cfg.RETRIEVER.FUSION.TUNE:
        log.warning("RETRIEVER.FUSION.TUNE: nothing tuned to use (no fusion.json in the checkpoint's run); "
                    "the configured ALPHA / RRF_K are used")
    data = first_stage(build_split(path, cfg.RETRIEVER.DATA), cfg, path_data, name)
    _report_issues(data)
    log.info("evaluating %s on %s (%s, %d queries)", checkpoint or cfg.RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE,
             path, data.mode, len(data.queries))
    if isinstance(model, torch.nn.Module):
        model.to(device)
    return {name: evaluate_split(model, tokenizer, data, cfg, device, dtype, run_dir, name, fusion=fusion)}


def results_table(results: dict[str, dict], metrics: tuple[str, ...] = ("mrr@5", "map", "ndcg@5", "ndcg@10",
                                                                        "precision@1", "hit_rate@5")) -> str:
    """Markdown table: one row per (split, scorer)."""
    rows = ["| split | scorer | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for split, res in results.items():
        extra = [m for m in res["metrics"][next(iter(res["metrics"]))] if m not in metrics]
        for scorer, values in res["metrics"].items():
            cells = [f"{values[m]:.4f}" if m in values else "" for m in metrics]
            rows.append(f"| {split} | {scorer} | " + " | ".join(cells) + " |")
        if extra:
            rows.append(f"| {split} | | also in results/{split}.json: {', '.join(extra)} |")
    return "\n".join(rows)

