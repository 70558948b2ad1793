"""The training loop: one function, read top to bottom, given built objects and no config.

The loss parts stay tensors on the device: they are summed as they come and read back (`.item()`,
one host sync) once per LOG_STEPS, as nanoGPT does, so a GPU is never stalled per micro-batch. A
non-finite part is noticed there, or at the latest before any checkpoint is written, so
checkpoints/last is always a finite state; the error names the first bad step.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from HybridPQA.data.training import TrainingSet
from HybridPQA.distributed import Distributed, wrap
from HybridPQA.engine import checkpoint as ckpt
from HybridPQA.engine.schedule import Schedule
from HybridPQA.engine.step import cached_backward, loss_parts
from HybridPQA.engine.tracking import Tracker
from HybridPQA.errors import InputError
from HybridPQA.heads import SPARSE
from HybridPQA.modeling.encoding import EncodingSettings
from HybridPQA.modeling.saved import Checkpointer
from HybridPQA.precision import autocast
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import progress

log = logging.getLogger(__name__)


@dataclass
class Training:
    """Everything the loop needs, built once (pipeline.build_training)."""
    model: torch.nn.Module
    tokenizer: object
    data: TrainingSet
    loss: torch.nn.Module  # losses.HybridLoss or CrossLoss: named parts
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    schedule: Schedule
    encoding: EncodingSettings
    checkpointer: Checkpointer
    tracker: Tracker
    validate: Callable[[torch.nn.Module], tuple[float, dict]] | None = None  # -> (select metric, {scorer: metrics})
    teacher: dict | None = None  # DISTILL.TEACHER_RUN {qid: {docid: score}}
    state: dict = field(default_factory=lambda: {"step": 0, "epoch": 0, "batch": 0, "kept": [], "scaler": None})


class _Health:
    """The first optimizer step whose loss part or gradient norm was not finite, kept on the device."""

    def __init__(self, device: torch.device):
        self.first = torch.full((), -1, dtype=torch.long, device=device)

    def see(self, values, step: int) -> None:
        ok = torch.stack([v.detach().float().reshape(()) for v in values]).isfinite().all()
        self.first = torch.where((self.first < 0) & ~ok, torch.full_like(self.first, step + 1), self.first)

    def check(self, run_dir: RunDir, record: dict) -> None:  # the host sync
        if int(self.first) >= 0:
            bad = {k: v for k, v in record.items() if not math.isfinite(v)}
            what = (f"loss part {next(iter(bad))} is {next(iter(bad.values()))} ({', '.join(bad)} non-finite)" if bad
                    else "the gradient norm is not finite")
            raise InputError(f"step {int(self.first)}: {what}; training stopped, the last good checkpoint is {run_dir.checkpoint('last')}; lower "
                             "RETRIEVER.SOLVER.OPTIMIZER.BASE_LR or raise TEMPERATURE, then --resume")


def _accumulate(pending: dict, parts: dict, sparse: dict) -> None:
    """Add a micro-batch's loss parts and active dimensions to the device-side sums (no host sync)."""
    for name, value in parts.items():
        pending[name] = pending.get(name, 0) + value.detach()
    for side, reps in sparse.items():
        name = f"active_dims_{side}"
        pending[name] = pending.get(name, 0) + (reps.detach() > 0).sum(-1).float().mean()


def _save_last(t: Training, run_dir: RunDir, scaler, ranks: Distributed | None) -> None:
    """checkpoints/last with everything --resume needs (every rank's random state too)."""
    rng_ranks = ranks.gather_objects(ckpt.rng_state()) if ranks is not None else None
    if ranks is None or ranks.main:
        trainer = {**t.state, "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
                   "loss": t.loss.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None}
        ckpt.save_last(run_dir, t.checkpointer, t.model, {**trainer, "rng_ranks": rng_ranks})
    if ranks is not None:
        ranks.barrier()  # the others wait while rank 0 validates and writes


def do_train(t: Training, run_dir: RunDir, device: torch.device, dtype: torch.dtype | None,
             ranks: Distributed | None = None, stop_at_step: int | None = None) -> Path | None:
    """Train until the schedule's total (or `stop_at_step`, for tests and interruptions); return the
    best checkpoint (by the val metric, else the last one). Under torchrun (`ranks`) every rank runs
    this loop; rank 0 alone writes, logs and validates."""
    s, model, state, main = t.schedule, t.model, t.state, ranks is None or ranks.main
    net = wrap(model, ranks, device, unused=SPARSE not in getattr(model, "heads", (SPARSE,)))  # DDP, else the model
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # fp16 needs loss scaling
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    health, pending = _Health(device), {}  # loss parts summed on the device since the last log line

    def flush() -> dict:  # the one host sync: the parts since the last log line, as floats
        record = {k: float(v) / (s.accumulation * s.log_steps) for k, v in pending.items()}
        pending.clear()
        health.check(run_dir, record)
        return record

    last_note = time.perf_counter()
    bar = progress(total=s.total_steps, initial=state["step"], desc="train", enabled=main, leave=True)
    while state["step"] < s.total_steps:
        model.train()
        lambda_q, lambda_d = t.loss.lambdas(state["step"])  # FLOPS' warm-up follows the optimizer step
        for micro in range(s.accumulation):  # gradient accumulation: more steps, same in-batch negatives
            batch = t.data.batch(state["epoch"], state["batch"])
            state["batch"] += 1
            if state["batch"] == t.data.batches_per_epoch():
                state["epoch"], state["batch"] = state["epoch"] + 1, 0
            # DDP averages gradients once per optimizer step, on the last micro-batch
            sync = net.no_sync() if ranks is not None and micro < s.accumulation - 1 else contextlib.nullcontext()
            with sync, autocast(device, dtype):
                args = (net, t.tokenizer, batch, t.loss, t.encoding, device, state["step"], t.teacher)
                if s.grad_cache_chunk:  # GradCache: the backward runs chunk by chunk inside (engine.step)
                    parts, sparse = cached_backward(*args, state["epoch"], s.grad_cache_chunk,
                                                    lambda total: scaler.scale(total / s.accumulation), ranks)
                else:
                    parts, sparse = loss_parts(*args, ranks, state["epoch"])
                    scaler.scale(sum(parts.values()) / s.accumulation).backward()  # the identity unless fp16
            health.see(parts.values(), state["step"])
            _accumulate(pending, parts, sparse)
        scaler.unscale_(t.optimizer)  # clip the true gradients, not the scaled ones
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm)
        if not scaler.is_enabled():  # fp16's scaler skips steps with inf gradients by design
            health.see([norm], state["step"])
        scaler.step(t.optimizer)
        scaler.update()
        t.scheduler.step()
        t.optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        bar.update(1)

        if state["step"] % s.log_steps == 0:
            parts = flush()
            record = {"step": state["step"], "loss": sum(v for k, v in parts.items() if not k.startswith("active")),
                      **parts, "lr": t.scheduler.get_last_lr()[0], "lambda_q": lambda_q, "lambda_d": lambda_d,
                      "epoch": state["epoch"]}
            t.tracker.log(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            if main and bar.disable and time.perf_counter() - last_note > 30:  # no bar: a line every ~30 s
                log.info("step %d/%d: loss %.4f", state["step"], s.total_steps, record["loss"])
                last_note = time.perf_counter()
        done = state["step"] == s.total_steps
        if state["step"] % s.eval_steps == 0 or done or stop_at_step is not None and state["step"] >= stop_at_step:
            health.check(run_dir, {k: float(v) for k, v in pending.items()})  # never save a non-finite state
            validated = None
            if t.validate is not None and main and (state["step"] % s.eval_steps == 0 or done):
                value, metrics = t.validate(model)
                validated = {"step": state["step"], "split": "val",
                             **{f"{scorer}/{k}": v for scorer, ms in metrics.items() for k, v in ms.items()}}
                log.info("step %d: val %s = %.4f", state["step"], s.select_metric, value)
                state["kept"] = ckpt.keep_best(run_dir, t.checkpointer, model, state["kept"], state["step"], value,
                                               s.save_limit)
            _save_last(t, run_dir, scaler, ranks)
            if validated is not None:  # after checkpoints/last: a sweep may stop the run on reading it
                t.tracker.log(validated)
            if stop_at_step is not None and state["step"] >= stop_at_step and not done:
                break
    bar.close()
    t.tracker.close()
    return run_dir.best_checkpoint() if main else None
