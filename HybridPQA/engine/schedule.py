"""What the training loop is given, built once from the config: the schedule, the optimizer and its
learning-rate schedule, and the state a resumed run continues from. The loop (engine.train)
reads no config."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from yacs.config import CfgNode

from HybridPQA.engine import checkpoint as ckpt
from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic
from HybridPQA.heads import DENSE, HYBRID, SPARSE
from HybridPQA.modeling import BiEncoder
from HybridPQA.modeling.saved import folders, load_weights
from HybridPQA.rundir import RunDir

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


@dataclass(frozen=True)
class Schedule:
    """When the loop does what, in optimizer steps."""
    total_steps: int  # TOTAL_TRAIN_STEPS
    log_steps: int = 10  # a metrics.jsonl line (and the one host sync of the loss parts) every this many
    eval_steps: int = 100  # validate, keep the best, save checkpoints/last
    accumulation: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = float("inf")  # gradient clipping; inf = none
    grad_cache_chunk: int = 0  # GradCache: questions encoded with gradients at a time; 0 = off
    save_limit: int = 1  # best checkpoints kept (CP_SAVE_LIMIT)
    select_metric: str = "mrr@5"  # the val metric that chooses them


def build_schedule(cfg: CfgNode) -> Schedule:
    s = cfg.RETRIEVER.SOLVER
    return Schedule(s.TOTAL_TRAIN_STEPS, s.LOG_STEPS, s.NUM_STEP_PER_EVAL, s.OPTIMIZER.GRADIENT_ACCUMULATION_STEPS,
                    s.OPTIMIZER.MAX_GRAD_NORM or float("inf"), s.GRAD_CACHE_CHUNK or 0, s.CP_SAVE_LIMIT,
                    s.SELECT_METRIC)


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
    values = metrics.get(HYBRID, next(iter(metrics.values())))
    if metric not in values:
        raise InputError(f"config: RETRIEVER.SOLVER.SELECT_METRIC = {metric!r} is not computed on this val split "
                         f"({results['mode']} mode); choose one of {', '.join(values)}")
    if values[metric] is None or not math.isfinite(values[metric]):
        raise InputError(f"val split: {metric} is {values[metric]} (no judged question was ranked); the best checkpoint "
                         "cannot be chosen on it; check the val split's qrels")
    return values[metric]


def vector_sizes(model: torch.nn.Module) -> dict[str, int]:
    """{head: size of its vectors} of a bi-encoder's documents (the softmax objective's classifier inputs)."""
    if not isinstance(model, BiEncoder):
        return {}
    encoder, sizes = model.document_encoder, {}
    if encoder.dense_head is not None:
        projection = encoder.dense_head.projection
        sizes[DENSE] = projection.out_features if projection is not None else model.backbone_config.hidden_size
    if encoder.sparse_head is not None:
        sizes[SPARSE] = len(encoder.sparse_head.vocab_mask)
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


def resume_state(run_dir: RunDir, model: torch.nn.Module, optimizer, scheduler, loss: torch.nn.Module,
                 rank: int | None, world_size: int) -> dict:
    """Load checkpoints/last into the model, optimizer, scheduler and loss, restore the random
    generators (each rank's own stream where the world size is unchanged), drop the metrics.jsonl
    lines logged after it; -> the loop's state (step, epoch, batch, kept, scaler)."""
    last, saved = ckpt.load_last(run_dir)
    load_weights(model, last)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    per_rank = saved.get("rng_ranks") or []
    ckpt.set_rng_state(per_rank[rank] if rank is not None and len(per_rank) == world_size else saved["rng"])
    if saved.get("loss"):  # the softmax objective's classifiers
        loss.load_state_dict(saved["loss"])
    if rank in (None, 0):
        _truncate_metrics(run_dir.metrics, saved["step"])
    return {**{k: saved[k] for k in ("step", "epoch", "batch", "kept")}, "scaler": saved.get("scaler")}


def gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each transformer layer's activations in the backward pass (less memory, ~30 % more
    compute), on every Hugging Face backbone of the model."""
    for module in model.modules():
        if hasattr(module, "gradient_checkpointing_enable") and module.supports_gradient_checkpointing:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
