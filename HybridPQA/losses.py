"""Training losses, built once by `build_loss(cfg)` and called per micro-batch with tensors only.
Each call returns named, already weighted parts; the training loop sums and logs them.

- `HybridLoss`: in-batch contrastive loss per head and on the hybrid score, FLOPS regularisation,
  distillation from teacher scores (MarginMSE, listwise KL) and self-distillation between heads;
- `CrossLoss`: the cross-encoder's listwise loss over each question's own contexts.

The hybrid score is `scoring.Fusion`, the one evaluation ranks with. In a batch it is fused over the
columns each question's softmax sees (every in-batch context, or its own with BROADCAST local): the
in-batch stand-in for evaluation's fusion over a query's candidates or the whole corpus.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from HybridPQA.scoring import Fusion, build_fusion, similarity

log = logging.getLogger(__name__)


def own_columns(num_q: int, num_ctx: int, device=None) -> torch.Tensor:
    """(Q, Q*C) bool: question i's own contexts, columns i*C..(i+1)*C-1."""
    per_q = num_ctx // num_q
    return torch.arange(num_ctx, device=device)[None, :] // per_q == torch.arange(num_q, device=device)[:, None]


def masked_logits(scores: torch.Tensor, positive: torch.Tensor, temperature: float,
                  broadcast: str = "global") -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, target) for the softmax over a question's negatives and its first own positive.

    scores, positive: (Q, Q*C). "local" keeps a question's own C contexts only; "global" all Q*C.
    Every other positive of the question is removed (it is no negative).
    """
    own = own_columns(*scores.shape, device=scores.device)
    target = (positive & own).float().argmax(dim=1)  # first own positive, global column
    drop = positive.clone()
    drop[torch.arange(scores.shape[0]), target] = False
    if broadcast == "local":
        drop |= ~own
    return (scores.float() / temperature).masked_fill(drop, float("-inf")), target


def contrastive_loss(scores: torch.Tensor, positive: torch.Tensor, temperature: float,
                     broadcast: str = "global") -> torch.Tensor:
    """Softmax cross-entropy of each question's first own positive (InfoNCE)."""
    logits, target = masked_logits(scores, positive, temperature, broadcast)
    return F.cross_entropy(logits, target)


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(softmax(teacher) || softmax(student)); -inf logits are left-out columns."""
    p_teacher = teacher.softmax(-1)
    log_ratio = teacher.log_softmax(-1) - student.log_softmax(-1)
    return torch.where(p_teacher > 0, p_teacher * log_ratio, 0.0).sum(-1).mean()


def margin_mse(student: torch.Tensor, teacher: torch.Tensor, is_positive: torch.Tensor) -> torch.Tensor:
    """(Q, C) scores of each question's own contexts, teacher NaN where unknown. MSE between the
    student's and the teacher's margins s(q, first positive) - s(q, negative) (Hofstaetter et al.)."""
    pos = is_positive.float().argmax(-1, keepdim=True)
    student_margin = student.gather(1, pos) - student
    teacher_margin = teacher.gather(1, pos) - teacher
    valid = ~is_positive & ~torch.isnan(teacher_margin)
    if not valid.any():
        return student.sum() * 0.0
    return F.mse_loss(student_margin[valid], teacher_margin[valid])


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, is_positive: torch.Tensor, kind: str,
                      teacher_temperature: float = 1.0) -> torch.Tensor:
    """(Q, C) student logits over each question's own contexts against teacher scores (NaN = unknown)."""
    if kind == "margin-mse":
        return margin_mse(student.float(), teacher, is_positive)
    known = ~torch.isnan(teacher)
    rows = known.sum(-1) >= 2  # a distribution needs two scored contexts
    if not rows.any():
        return student.sum() * 0.0
    teacher = (teacher / teacher_temperature).masked_fill(~known, float("-inf"))
    return kl_divergence(student.float().masked_fill(~known, float("-inf"))[rows], teacher[rows])


def own_scores(scores: torch.Tensor) -> torch.Tensor:
    """(Q, Q*C) -> (Q, C): each question's scores of its own contexts."""
    num_q = scores.shape[0]
    return scores[own_columns(*scores.shape, device=scores.device)].view(num_q, -1)


def flops(reps: torch.Tensor) -> torch.Tensor:
    """(N, V) -> scalar: sum over the vocabulary of the squared mean absolute weight (Paria et al., 2020)."""
    return reps.abs().mean(dim=0).pow(2).sum()


def lambda_at(step: int, lam: float, warmup_steps: int) -> float:
    """Quadratic warm-up lam * min(1, step / warmup)^2, counted in optimizer steps."""
    return lam * min(1.0, step / warmup_steps) ** 2




class HybridLoss:
    """Bi-encoder loss. Called with {head: (Q, D) / (Q, V) / (Q, L, D)} query and {head: (Q*C, ...)}
    context representations, positive (Q, Q*C) bool, teacher (Q, C) scores (NaN = unknown) or None,
    and the optimizer step. Parts: contrastive_<head> (dense, sparse, late, hybrid), flops_{q,d}
    (weighted by the step's lambdas), distill_<head>, self_distill_{dense,sparse}."""

    def __init__(self, *, temperature: float = 0.5, broadcast: str = "global", func: str = "dot",
                 fusion: Fusion = Fusion(), hybrid_weight: float = 0.0, lambda_q: float = 0.0, lambda_d: float = 0.0,
                 reg_warmup_steps: int = 1, distill: str = "margin-mse", distill_weight: float = 0.0,
                 teacher_temperature: float = 1.0, self_weight: float = 0.0, self_start_step: int = 0):
        self.temperature, self.broadcast, self.func = temperature, broadcast, func
        self.fusion = fusion.surrogate()  # what training fuses with: `fusion` itself unless it has no gradient
        self.hybrid_weight, self.lambda_q, self.lambda_d, self.reg_warmup_steps = (hybrid_weight, lambda_q, lambda_d,
                                                                                   reg_warmup_steps)
        self.distill, self.distill_weight, self.teacher_temperature = distill, distill_weight, teacher_temperature
        self.self_weight, self.self_start_step = self_weight, self_start_step

    @property
    def uses_hybrid(self) -> bool:
        return self.hybrid_weight > 0 or self.distill_weight > 0 or self.self_weight > 0

    def lambdas(self, step: int) -> tuple[float, float]:
        """(lambda_q, lambda_d) at optimizer step `step`: the quadratic warm-up."""
        return (lambda_at(step, self.lambda_q, self.reg_warmup_steps),
                lambda_at(step, self.lambda_d, self.reg_warmup_steps))

    def columns(self, positive: torch.Tensor) -> torch.Tensor:
        """(Q, Q*C) bool: the contexts each question is scored (and its hybrid fused) against."""
        if self.broadcast == "local":
            return own_columns(*positive.shape, device=positive.device)
        return torch.ones_like(positive, dtype=torch.bool)

    def scores(self, query: dict, context: dict, positive: torch.Tensor) -> dict[str, torch.Tensor]:
        """{scorer: (Q, Q*C)} in-batch scores of every head, and the hybrid where there are dense and sparse."""
        scores = {head: similarity(query[head], context[head], self.func) for head in query}
        if {"dense", "sparse"} <= set(scores):
            scores["hybrid"] = self.fusion.fuse(scores["dense"].float(), scores["sparse"].float(),
                                                self.columns(positive))
        return scores

    def __call__(self, query: dict, context: dict, positive: torch.Tensor, teacher: torch.Tensor | None = None,
                 step: int = 0) -> dict[str, torch.Tensor]:
        scores = self.scores(query, context, positive)
        fused = scores.pop("hybrid", None)
        t, b = self.temperature, self.broadcast
        parts = {f"contrastive_{h}": contrastive_loss(s, positive, t, b) for h, s in scores.items()}
        if self.hybrid_weight > 0 and fused is not None:
            parts["contrastive_hybrid"] = self.hybrid_weight * contrastive_loss(fused, positive, t, b)
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


def build_loss(cfg) -> HybridLoss | CrossLoss:
    """The loss of MODEL.BIENCODER_TYPE from SOLVER, FUSION and DISTILL; says which fusion it trains with."""
    s, dist = cfg.RETRIEVER.SOLVER, cfg.RETRIEVER.DISTILL
    distill = {"distill": dist.LOSS, "distill_weight": dist.WEIGHT, "teacher_temperature": dist.TEACHER_TEMPERATURE}
    if cfg.RETRIEVER.MODEL.BIENCODER_TYPE == "cross":
        return CrossLoss(**distill)
    fusion = build_fusion(cfg)
    loss = HybridLoss(temperature=s.TEMPERATURE, broadcast=s.BROADCAST, func=s.FUNC, fusion=fusion,
                      hybrid_weight=s.HYBRID_LOSS_WEIGHT, lambda_q=s.LAMBDA_QUERY, lambda_d=s.LAMBDA_CONTEXT,
                      reg_warmup_steps=s.REG_WARMUP_STEPS or s.TOTAL_TRAIN_STEPS, self_weight=dist.SELF_WEIGHT,
                      self_start_step=dist.SELF_START_STEP, **distill)
    if loss.uses_hybrid and cfg.RETRIEVER.MODEL.BIENCODER_TYPE == "hybrid":
        where = "its own contexts" if s.BROADCAST == "local" else "every in-batch context"
        if not fusion.differentiable:
            log.info("hybrid loss: %s has no gradient; training fuses with the surrogate %s, over %s", fusion.describe(),
                     loss.fusion.describe(), where)
        elif fusion.norm != "none":
            log.info("hybrid loss: %s, each question's scores normalised over %s (evaluation: over its candidates "
                     "or the corpus)", fusion.describe(), where)
    return loss
