"""The training loop: one function, read top to bottom."""
from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import defaultdict
from pathlib import Path

import torch
from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData
from HybridPQA.data.training import TrainingSet
from HybridPQA.engine import checkpoint as ckpt
from HybridPQA.engine.distributed import Distributed, wrap
from HybridPQA.engine.step import cached_backward, loss_parts
from HybridPQA.engine.tracking import Tracker
from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import evaluate_split
from HybridPQA.files import write_atomic
from HybridPQA.losses import build_loss
from HybridPQA.modeling import BiEncoder, CrossEncoder
from HybridPQA.modeling.encoding import build_encoding
from HybridPQA.modeling.saved import folders, load_weights
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import autocast, progress

log = logging.getLogger(__name__)
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def build_optimizer(model: torch.nn.Module, opt: CfgNode, loss: torch.nn.Module | None = None) -> torch.optim.Optimizer:
    """AdamW/Adam with no weight decay on biases and LayerNorm weights; the fused kernel (one pass
    over all parameters, ~15x faster than the per-tensor loop on CPU) where torch has it. With
    HEAD_LR, the parameters outside the pretrained backbones (and the loss's own) train at that rate."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params += [(f"loss.{n}", p) for n, p in (loss.named_parameters() if loss is not None else []) if p.requires_grad]
    backbone = {id(p) for m in folders(model).values() for p in m.parameters()} if opt.HEAD_LR else None
    groups = []
    for lr, part in ((opt.BASE_LR, params),) if backbone is None else (
            (opt.BASE_LR, [(n, p) for n, p in params if id(p) in backbone]),
            (opt.HEAD_LR, [(n, p) for n, p in params if id(p) not in backbone])):
        groups += [{"params": [p for n, p in part if not n.endswith(NO_DECAY)], "weight_decay": opt.WEIGHT_DECAY, "lr": lr},
                   {"params": [p for n, p in part if n.endswith(NO_DECAY)], "weight_decay": 0.0, "lr": lr}]
    cls = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam}[opt.NAME]
    fused = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for _, p in params)
    return cls(groups, lr=opt.BASE_LR, eps=opt.EPS, betas=tuple(opt.BETAS), fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def selection_value(results: dict, metric: str) -> float:
    """SELECT_METRIC of the hybrid scorer, or of the only scorer a dense/sparse model has."""
    metrics = results["metrics"]
    values = metrics.get("hybrid", next(iter(metrics.values())))
    if metric not in values:
        raise InputError(f"config: RETRIEVER.SOLVER.SELECT_METRIC = {metric!r} is not computed on this val split "
                         f"({results['mode']} mode); choose one of {', '.join(values)}")
    return values[metric]


def vector_sizes(model: torch.nn.Module) -> dict[str, int]:
    """{head: size of its vectors} of a bi-encoder's documents (the softmax objective's classifier inputs)."""
    if not isinstance(model, BiEncoder):
        return {}
    encoder, sizes = model.document_encoder, {}
    if encoder.dense_head is not None:
        projection = encoder.dense_head.projection
        sizes["dense"] = projection.out_features if projection is not None else model.backbone_config.hidden_size
    if encoder.sparse_head is not None:
        sizes["sparse"] = len(encoder.sparse_head.vocab_mask)
    return sizes


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint we resume from, so no step appears twice, and a line
    torn by a crash."""
    if path.is_file():
        lines = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    lines.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        write_atomic(path, "".join(line + "\n" for line in lines))


def _check_finite(parts: dict[str, torch.Tensor], step: int, run_dir: RunDir) -> None:
    """Stop on a NaN or infinite loss part, naming the step and the part; checkpoints/last stays the
    last good state."""
    bad = {name: value.item() for name, value in parts.items() if not torch.isfinite(value)}
    if bad:
        name, value = next(iter(bad.items()))
        raise InputError(f"step {step + 1}: loss part {name} is {value} ({', '.join(bad)} non-finite); training "
                         f"stopped, the last good checkpoint is {run_dir.checkpoint('last')}; lower "
                         "RETRIEVER.SOLVER.OPTIMIZER.BASE_LR or raise TEMPERATURE, then --resume")


def gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each transformer layer's activations in the backward pass (less memory, ~30 % more
    compute), on every Hugging Face backbone of the model."""
    for module in model.modules():
        if hasattr(module, "gradient_checkpointing_enable") and module.supports_gradient_checkpointing:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def do_train(cfg: CfgNode, run_dir: RunDir | Path, model: BiEncoder | CrossEncoder, tokenizer, train_set: TrainingSet,
             val_data: RankingData | None, device: torch.device, dtype: torch.dtype | None,
             resume: bool = False, stop_at_step: int | None = None, teacher: dict | None = None,
             ranks: Distributed | None = None) -> Path | None:
    """Train until TOTAL_TRAIN_STEPS (or `stop_at_step`, for tests and interruptions); return the
    best checkpoint directory (by SELECT_METRIC on the val split, else the last one).
    `teacher`: a TREC run {qid: {docid: score}} to distil from (RETRIEVER.DISTILL).
    `ranks`: under torchrun, every rank runs this loop; rank 0 alone writes, logs and evaluates."""
    s, run_dir = cfg.RETRIEVER.SOLVER, RunDir.of(run_dir)
    main = ranks is None or ranks.main
    accumulation = s.OPTIMIZER.GRADIENT_ACCUMULATION_STEPS
    loss_fn, encoding = build_loss(cfg, vector_sizes(model)), build_encoding(cfg)
    model.to(device)  # before the optimizer, so its restored state lands on the parameters' device
    if isinstance(loss_fn, torch.nn.Module):
        loss_fn.to(device)
    if s.GRADIENT_CHECKPOINTING:
        gradient_checkpointing(model)
    net = wrap(model, ranks, device)  # DDP under torchrun, else the model itself
    optimizer = build_optimizer(model, s.OPTIMIZER, loss_fn if isinstance(loss_fn, torch.nn.Module) else None)
    scheduler = build_scheduler(optimizer, s.OPTIMIZER.WARMUP_STEPS, s.TOTAL_TRAIN_STEPS)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # fp16 needs loss scaling
    state = {"step": 0, "epoch": 0, "batch": 0, "kept": []}
    if resume:
        last, saved = ckpt.load_last(run_dir)
        load_weights(model, last)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        per_rank = saved.get("rng_ranks") or []
        ckpt.set_rng_state(per_rank[ranks.rank] if ranks is not None and len(per_rank) == ranks.world_size
                           else saved["rng"])  # each rank's own dropout stream, when the world size is the same
        state = {k: saved[k] for k in state}
        if saved.get("loss"):  # the softmax objective's classifiers
            loss_fn.load_state_dict(saved["loss"])
        log.info("resumed at step %d (epoch %d, batch %d)", state["step"], state["epoch"], state["batch"])
        if main:
            _truncate_metrics(run_dir.metrics, state["step"])
    tracker = Tracker(run_dir, cfg, enabled=main)  # metrics.jsonl and LOG.BACKENDS

    def trainer_state() -> dict:
        return {**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "loss": loss_fn.state_dict() if isinstance(loss_fn, torch.nn.Module) else None,
                "scaler": scaler.state_dict() if scaler.is_enabled() else None}

    def checkpoint_last() -> None:
        rng_ranks = ranks.gather_objects(ckpt.rng_state()) if ranks is not None else None
        if main:
            ckpt.save_last(run_dir, model, tokenizer, cfg, {**trainer_state(), "rng_ranks": rng_ranks})
        if ranks is not None:
            ranks.barrier()  # the others wait while rank 0 evaluates and writes

    logged = defaultdict(float)
    last_note = time.perf_counter()
    bar = progress(total=s.TOTAL_TRAIN_STEPS, initial=state["step"], desc=f"train {cfg.EXP}", enabled=main, leave=True)
    while state["step"] < s.TOTAL_TRAIN_STEPS:
        model.train()
        # the lambdas ramp up quadratically with the optimizer step, not the micro-batch
        lambda_q, lambda_d = loss_fn.lambdas(state["step"])
        for micro in range(accumulation):  # gradient accumulation: more steps, same in-batch negatives
            batch = train_set.batch(state["epoch"], state["batch"])
            state["batch"] += 1
            if state["batch"] == train_set.batches_per_epoch():
                state["epoch"], state["batch"] = state["epoch"] + 1, 0
            # DDP averages gradients once per optimizer step, on the last micro-batch
            sync = net.no_sync() if ranks is not None and micro < accumulation - 1 else contextlib.nullcontext()
            with sync:
                with autocast(device, dtype):
                    if s.GRAD_CACHE_CHUNK:  # GradCache: the backward runs chunk by chunk inside (engine.step)
                        parts, sparse = cached_backward(net, tokenizer, batch, loss_fn, encoding, device, state["step"],
                                                        teacher, state["epoch"], s.GRAD_CACHE_CHUNK,
                                                        lambda total: scaler.scale(total / accumulation), ranks)
                    else:
                        parts, sparse = loss_parts(net, tokenizer, batch, loss_fn, encoding, device, state["step"],
                                                   teacher, ranks, state["epoch"])
                _check_finite(parts, state["step"], run_dir)
                if not s.GRAD_CACHE_CHUNK:
                    scaler.scale(sum(parts.values()) / accumulation).backward()  # scale: the identity unless fp16
            for name, value in parts.items():
                logged[name] += value.item() / accumulation / s.LOG_STEPS
            for side, reps in sparse.items():
                logged[f"active_dims_{side}"] += (reps > 0).sum(-1).float().mean().item() / accumulation / s.LOG_STEPS
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.OPTIMIZER.MAX_GRAD_NORM or float("inf"))
        if not scaler.is_enabled():  # fp16's scaler skips steps with inf gradients by design
            _check_finite({"gradient norm": norm}, state["step"], run_dir)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        bar.update(1)

        if state["step"] % s.LOG_STEPS == 0:
            record = {"step": state["step"], "loss": sum(v for k, v in logged.items() if not k.startswith("active")),
                      **logged, "lr": scheduler.get_last_lr()[0], "lambda_q": lambda_q, "lambda_d": lambda_d,
                      "epoch": state["epoch"]}
            tracker.log(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            logged = defaultdict(float)
            if main and bar.disable and time.perf_counter() - last_note > 30:  # no bar: a line every ~30 s
                log.info("step %d/%d: loss %.4f", state["step"], s.TOTAL_TRAIN_STEPS, record["loss"])
                last_note = time.perf_counter()
        done = state["step"] == s.TOTAL_TRAIN_STEPS
        if state["step"] % s.NUM_STEP_PER_EVAL == 0 or done:
            if val_data is not None and main:
                results = evaluate_split(model, tokenizer, val_data, cfg, device, dtype, with_efficiency=False)
                value = selection_value(results, s.SELECT_METRIC)
                tracker.log({"step": state["step"], "split": "val", **{f"{sc}/{k}": v for sc, ms in results["metrics"].items()
                                                                for k, v in ms.items()}})
                log.info("step %d: val %s = %.4f", state["step"], s.SELECT_METRIC, value)
                state["kept"] = ckpt.keep_best(run_dir, model, tokenizer, cfg, state["kept"], state["step"], value,
                                               s.CP_SAVE_LIMIT)
            checkpoint_last()
        if stop_at_step is not None and state["step"] >= stop_at_step and not done:
            checkpoint_last()
            break
    bar.close()
    tracker.close()
    return run_dir.best_checkpoint() if main else None

