"""Training losses, built once by `build_loss(cfg)` and called per micro-batch with tensors only.
Each call returns named, already weighted parts; the training loop sums and logs them.

- `HybridLoss` (losses.hybrid): SOLVER.LOSS's objective on each head's and the hybrid score's
  in-batch scores, plus terms (losses.parts): FLOPS regularisation, distillation from teacher
  scores (MarginMSE, listwise KL), self-distillation between heads, and I3's query reconstruction;
- `CrossLoss`: the cross-encoder's listwise loss over each question's own contexts.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from HybridPQA.errors import InputError
from HybridPQA.losses.hybrid import HybridLoss
from HybridPQA.losses.objectives import contrastive_loss, distillation_loss, flops, own_columns, own_scores
from HybridPQA.losses.parts import (
    OBJECTIVES,
    Distillation,
    Flops,
    LossInput,
    Reconstruction,
    SelfDistillation,
    lambda_at,
)
from HybridPQA.scoring import build_fusion

__all__ = ["OBJECTIVES", "CrossLoss", "Distillation", "Flops", "HybridLoss", "LossInput", "Reconstruction",
           "SelfDistillation", "build_loss", "check_objective", "contrastive_loss", "distillation_loss", "flops",
           "lambda_at", "own_columns", "own_scores"]

log = logging.getLogger(__name__)


class CrossLoss(nn.Module):
    """Cross-encoder loss: (Q, C) logits of each question's own contexts, positive (Q, Q*C), teacher
    (Q, C) or None. Listwise softmax cross-entropy of the first positive against its negatives."""

    def __init__(self, *, distill: str = "margin-mse", distill_weight: float = 0.0, teacher_temperature: float = 1.0):
        super().__init__()
        self.distill, self.distill_weight, self.teacher_temperature = distill, distill_weight, teacher_temperature

    def lambdas(self, step: int) -> tuple[float, float]:
        return 0.0, 0.0

    def forward(self, scores: torch.Tensor, positive: torch.Tensor, teacher: torch.Tensor | None = None,
                step: int = 0) -> dict[str, torch.Tensor]:
        num_q, per_q = scores.shape
        full = scores.new_full((num_q, num_q * per_q), float("-inf"))
        full[own_columns(num_q, num_q * per_q, device=scores.device)] = scores.reshape(-1)
        parts = {"contrastive_cross": contrastive_loss(full, positive, 1.0, "local")}
        if teacher is not None and self.distill_weight > 0:
            parts["distill_cross"] = self.distill_weight * distillation_loss(
                scores, teacher, own_scores(positive), self.distill, self.teacher_temperature)
        return parts


def check_objective(solver) -> None:
    """SOLVER.LOSS against the rest of SOLVER, as the objective itself declares (before any model loads)."""
    objective = OBJECTIVES[solver.LOSS]
    if solver.HYBRID_LOSS_WEIGHT > 0 and not objective.hybrid_form:
        forms = ", ".join(n for n, o in OBJECTIVES.items() if o.hybrid_form)
        raise InputError(f"config: RETRIEVER.SOLVER.LOSS = {solver.LOSS!r} works on each head's vectors and has no "
                         f"hybrid-score form; set HYBRID_LOSS_WEIGHT 0, or LOSS one of {forms}")


def build_loss(cfg, dims: dict[str, int] | None = None) -> HybridLoss | CrossLoss:
    """The loss of MODEL.BIENCODER_TYPE from SOLVER, FUSION and DISTILL: SOLVER.LOSS's objective and the
    terms the config switches on; says which fusion it trains with. `dims` {head: vector size}
    sizes the softmax objective's classifiers."""
    s, dist, m = cfg.RETRIEVER.SOLVER, cfg.RETRIEVER.DISTILL, cfg.RETRIEVER.MODEL
    if m.BIENCODER_TYPE == "cross":
        return CrossLoss(distill=dist.LOSS, distill_weight=dist.WEIGHT, teacher_temperature=dist.TEACHER_TEMPERATURE)
    check_objective(s)
    objective = OBJECTIVES[s.LOSS](temperature=s.TEMPERATURE, broadcast=s.BROADCAST, num_labels=s.NUM_LABELS,
                                   dims=dims, product=s.CLASSIFIER_PRODUCT, margin=s.TRIPLET_MARGIN,
                                   distance=s.TRIPLET_DISTANCE, mining=s.TRIPLET_MINING)
    terms = [Flops(s.LAMBDA_QUERY, s.LAMBDA_CONTEXT, s.REG_WARMUP_STEPS or s.TOTAL_TRAIN_STEPS)]
    if dist.WEIGHT > 0:
        terms.append(Distillation(dist.WEIGHT, dist.LOSS, s.TEMPERATURE, dist.TEACHER_TEMPERATURE))
    if dist.SELF_WEIGHT > 0:
        terms.append(SelfDistillation(dist.SELF_WEIGHT, dist.SELF_START_STEP, s.TEMPERATURE, s.BROADCAST))
    if m.IMPLICIT_INTERACTION and m.I3.TARGETS != "none":
        terms.append(Reconstruction(m.I3.RECON_WEIGHT, m.I3.RECON_DECAY))
    fusion = build_fusion(cfg)
    loss = HybridLoss(objective, fusion, terms, func=s.FUNC, broadcast=s.BROADCAST, hybrid_weight=s.HYBRID_LOSS_WEIGHT)
    if (s.HYBRID_LOSS_WEIGHT > 0 or dist.WEIGHT > 0 or dist.SELF_WEIGHT > 0) and m.BIENCODER_TYPE == "hybrid":
        where = "its own contexts" if s.BROADCAST == "local" else "every in-batch context"
        if not fusion.differentiable:
            log.info("hybrid loss: %s has no gradient; training fuses with the surrogate %s, over %s", fusion.describe(),
                     loss.fusion.describe(), where)
        elif fusion.norm != "none":
            log.info("hybrid loss: %s, each question's scores normalised over %s (evaluation: over its candidates "
                     "or the corpus)", fusion.describe(), where)
    return loss
