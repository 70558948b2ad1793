"""Training losses, built once by `build_loss(cfg)` and called per micro-batch with tensors only.
Each call returns named, already weighted parts; the training loop sums and logs them.

- `HybridLoss`: each head's objective (SOLVER.LOSS, `objectives`: in-batch contrastive by default)
  and the hybrid score's, FLOPS regularisation, distillation from teacher scores (MarginMSE,
  listwise KL), self-distillation between heads, and I3's query reconstruction;
- `CrossLoss`: the cross-encoder's listwise loss over each question's own contexts.

The hybrid score is `scoring.Fusion`, the one evaluation ranks with. In a batch it is fused over the
columns each question's softmax sees (every in-batch context, or its own with BROADCAST local): the
in-batch stand-in for evaluation's fusion over a query's candidates or the whole corpus.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from HybridPQA.losses.objectives import (
    SoftmaxClassifier,
    contrastive_loss,
    cosent,
    cosine_mse,
    distillation_loss,
    flops,
    kl_divergence,
    masked_logits,
    own_columns,
    own_scores,
    reconstruction,
    symmetric_infonce,
    triplet,
)
from HybridPQA.scoring import Fusion, build_fusion, similarity

HEADS = ("dense", "sparse", "late")  # the representations that are scored; others (pseudo_query) are not
__all__ = ["HybridLoss", "CrossLoss", "build_loss", "contrastive_loss", "distillation_loss", "flops", "lambda_at",
           "own_columns", "own_scores"]
SCORE_OBJECTIVES = ("contrastive", "symmetric-infonce", "cosent")  # defined on any score, the hybrid's too

log = logging.getLogger(__name__)


def lambda_at(step: int, lam: float, warmup_steps: int) -> float:
    """Quadratic warm-up lam * min(1, step / warmup)^2, counted in optimizer steps."""
    return lam * min(1.0, step / warmup_steps) ** 2



class HybridLoss(nn.Module):
    """Bi-encoder loss. Called with {head: (Q, D) / (Q, V) / (Q, L, D)} query and {head: (Q*C, ...)}
    context representations, positive (Q, Q*C) bool, teacher (Q, C) scores (NaN = unknown) or None,
    the optimizer step, graded `labels` (Q, C) of each question's own contexts, I3's reconstruction
    `targets` (Q*C, S) token ids (-100 = none) and the epoch. Parts: <objective>_<head> (dense,
    sparse, late, hybrid; e.g. contrastive_dense, cosent_hybrid), flops_{q,d} (weighted by the
    step's lambdas), distill_<head>, self_distill_{dense,sparse}, reconstruction.

    A module only for the softmax objective's classifiers (one per head, `dims`), which train with it."""

    def __init__(self, *, temperature: float = 0.5, broadcast: str = "global", func: str = "dot",
                 fusion: Fusion = Fusion(), hybrid_weight: float = 0.0, lambda_q: float = 0.0, lambda_d: float = 0.0,
                 reg_warmup_steps: int = 1, distill: str = "margin-mse", distill_weight: float = 0.0,
                 teacher_temperature: float = 1.0, self_weight: float = 0.0, self_start_step: int = 0,
                 objective: str = "contrastive", num_labels: int = 2, classifier_product: bool = False,
                 dims: dict[str, int] | None = None, triplet_distance: str = "euclidean", triplet_margin: float = 5.0,
                 triplet_mining: str = "none", recon_weight: float = 0.0, recon_decay: float = 10.0):
        super().__init__()
        self.temperature, self.broadcast, self.func = temperature, broadcast, func
        self.fusion = fusion.surrogate()  # what training fuses with: `fusion` itself unless it has no gradient
        self.hybrid_weight, self.lambda_q, self.lambda_d, self.reg_warmup_steps = (hybrid_weight, lambda_q, lambda_d,
                                                                                   reg_warmup_steps)
        self.distill, self.distill_weight, self.teacher_temperature = distill, distill_weight, teacher_temperature
        self.self_weight, self.self_start_step = self_weight, self_start_step
        self.objective, self.num_labels = objective, num_labels
        self.triplet_distance, self.triplet_margin, self.triplet_mining = triplet_distance, triplet_margin, triplet_mining
        self.recon_weight, self.recon_decay = recon_weight, recon_decay
        self.classifiers = nn.ModuleDict({head: SoftmaxClassifier(dim, num_labels, classifier_product)
                                          for head, dim in (dims or {}).items()} if objective == "softmax" else {})

    @property
    def uses_hybrid(self) -> bool:
        return self.hybrid_weight > 0 or self.distill_weight > 0 or self.self_weight > 0

    def lambdas(self, step: int) -> tuple[float, float]:
        """(lambda_q, lambda_d) at optimizer step `step`: the quadratic warm-up."""
        return (lambda_at(step, self.lambda_q, self.reg_warmup_steps),
                lambda_at(step, self.lambda_d, self.reg_warmup_steps))

    def beta(self, epoch: int) -> float:
        """I3's reconstruction weight at `epoch`: RECON_WEIGHT * RECON_DECAY ** -epoch."""
        return self.recon_weight * self.recon_decay ** -epoch

    def columns(self, positive: torch.Tensor) -> torch.Tensor:
        """(Q, Q*C) bool: the contexts each question is scored (and its hybrid fused) against."""
        if self.broadcast == "local":
            return own_columns(*positive.shape, device=positive.device)
        return torch.ones_like(positive, dtype=torch.bool)

    def scores(self, query: dict, context: dict, positive: torch.Tensor) -> dict[str, torch.Tensor]:
        """{scorer: (Q, Q*C)} in-batch scores of every head, and the hybrid where there are dense and sparse."""
        scores = {head: similarity(query[head], context[head], self.func) for head in HEADS if head in query}
        if {"dense", "sparse"} <= set(scores):
            scores["hybrid"] = self.fusion.fuse(scores["dense"].float(), scores["sparse"].float(),
                                                self.columns(positive))
        return scores

    def objective_loss(self, head: str, scores: torch.Tensor, positive: torch.Tensor, labels: torch.Tensor | None,
                       query: dict, context: dict) -> torch.Tensor:
        """SOLVER.LOSS on one head's (or the hybrid's) in-batch scores, or on its vectors."""
        t, b = self.temperature, self.broadcast
        if self.objective == "contrastive":
            return contrastive_loss(scores, positive, t, b)
        if self.objective == "symmetric-infonce":
            return symmetric_infonce(scores, positive, t, b)
        if self.objective == "triplet":
            return triplet(query[head], context[head], positive, self.triplet_margin, self.triplet_distance,
                           self.triplet_mining, b)
        if labels is None:
            labels = own_scores(positive).float()  # binary data: a positive is label 1
        if self.objective == "cosent":
            return cosent(own_scores(scores), labels, t)
        if self.objective == "cosine-mse":
            return cosine_mse(own_scores(scores), labels, self.num_labels)
        return self.classifiers[head].loss(query[head], context[head], labels)

    def forward(self, query: dict, context: dict, positive: torch.Tensor, teacher: torch.Tensor | None = None,
                step: int = 0, labels: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                epoch: int = 0) -> dict[str, torch.Tensor]:
        scores = self.scores(query, context, positive)
        fused = scores.pop("hybrid", None)
        t, b, name = self.temperature, self.broadcast, self.objective.replace("-", "_")
        parts = {f"{name}_{h}": self.objective_loss(h, s, positive, labels, query, context) for h, s in scores.items()}
        if self.hybrid_weight > 0 and fused is not None:
            parts[f"{name}_hybrid"] = self.hybrid_weight * self.objective_loss("hybrid", fused, positive, labels,
                                                                               query, context)
        if teacher is not None and self.distill_weight > 0:
            is_positive = own_scores(positive)
            for head, s in {**scores, **({"hybrid": fused} if fused is not None else {})}.items():
                parts[f"distill_{head}"] = self.distill_weight * distillation_loss(
                    own_scores(s) / t, teacher, is_positive, self.distill, self.teacher_temperature)
        if self.self_weight > 0 and step >= self.self_start_step and fused is not None:
            target, _ = masked_logits(fused.detach(), positive, t, b)  # BGE-M3: the fused score teaches each head
            for head in ("dense", "sparse"):
                student, _ = masked_logits(scores[head], positive, t, b)
                parts[f"self_distill_{head}"] = self.self_weight * kl_divergence(student, target)
        if "sparse" in query:
            lambda_q, lambda_d = self.lambdas(step)
            parts["flops_q"] = lambda_q * flops(query["sparse"].float())
            parts["flops_d"] = lambda_d * flops(context["sparse"].float())
        if "pseudo_query" in context and targets is not None and self.beta(epoch) > 0:
            parts["reconstruction"] = self.beta(epoch) * reconstruction(context["pseudo_query"], targets)
        return parts


class CrossLoss:
    """Cross-encoder loss: (Q, C) logits of each question's own contexts, positive (Q, Q*C), teacher
    (Q, C) or None. Listwise softmax cross-entropy of the first positive against its negatives."""

    def __init__(self, *, distill: str = "margin-mse", distill_weight: float = 0.0, teacher_temperature: float = 1.0):
        self.distill, self.distill_weight, self.teacher_temperature = distill, distill_weight, teacher_temperature

    def lambdas(self, step: int) -> tuple[float, float]:
        return 0.0, 0.0

    def __call__(self, scores: torch.Tensor, positive: torch.Tensor, teacher: torch.Tensor | None = None,
                 step: int = 0) -> dict[str, torch.Tensor]:
        num_q, per_q = scores.shape
        full = scores.new_full((num_q, num_q * per_q), float("-inf"))
        full[own_columns(num_q, num_q * per_q, device=scores.device)] = scores.reshape(-1)
        parts = {"contrastive_cross": contrastive_loss(full, positive, 1.0, "local")}
        if teacher is not None and self.distill_weight > 0:
            parts["distill_cross"] = self.distill_weight * distillation_loss(
                scores, teacher, own_scores(positive), self.distill, self.teacher_temperature)
        return parts


def build_loss(cfg, dims: dict[str, int] | None = None) -> HybridLoss | CrossLoss:
    """The loss of MODEL.BIENCODER_TYPE from SOLVER, FUSION and DISTILL; says which fusion it trains with.
    `dims` {head: vector size} sizes the softmax objective's classifiers."""
    s, dist = cfg.RETRIEVER.SOLVER, cfg.RETRIEVER.DISTILL
    distill = {"distill": dist.LOSS, "distill_weight": dist.WEIGHT, "teacher_temperature": dist.TEACHER_TEMPERATURE}
    if cfg.RETRIEVER.MODEL.BIENCODER_TYPE == "cross":
        return CrossLoss(**distill)
    fusion = build_fusion(cfg)
    m = cfg.RETRIEVER.MODEL
    recon = m.IMPLICIT_INTERACTION and m.I3.TARGETS != "none"
    i3 = {"recon_weight": m.I3.RECON_WEIGHT if recon else 0.0, "recon_decay": m.I3.RECON_DECAY}
    loss = HybridLoss(temperature=s.TEMPERATURE, broadcast=s.BROADCAST, func=s.FUNC, fusion=fusion,
                      hybrid_weight=s.HYBRID_LOSS_WEIGHT, lambda_q=s.LAMBDA_QUERY, lambda_d=s.LAMBDA_CONTEXT,
                      reg_warmup_steps=s.REG_WARMUP_STEPS or s.TOTAL_TRAIN_STEPS, self_weight=dist.SELF_WEIGHT,
                      self_start_step=dist.SELF_START_STEP, objective=s.LOSS, num_labels=s.NUM_LABELS,
                      classifier_product=s.CLASSIFIER_PRODUCT, dims=dims, triplet_distance=s.TRIPLET_DISTANCE,
                      triplet_margin=s.TRIPLET_MARGIN, triplet_mining=s.TRIPLET_MINING, **i3, **distill)
    if loss.uses_hybrid and cfg.RETRIEVER.MODEL.BIENCODER_TYPE == "hybrid":
        where = "its own contexts" if s.BROADCAST == "local" else "every in-batch context"
        if not fusion.differentiable:
            log.info("hybrid loss: %s has no gradient; training fuses with the surrogate %s, over %s", fusion.describe(),
                     loss.fusion.describe(), where)
        elif fusion.norm != "none":
            log.info("hybrid loss: %s, each question's scores normalised over %s (evaluation: over its candidates "
                     "or the corpus)", fusion.describe(), where)
    return loss
