"""The parts a bi-encoder loss is composed of (sentence-transformers' SpladeLoss: a main loss plus
regularisers, each its own object).

An *objective* scores one head's (or the hybrid's) in-batch layout: `OBJECTIVES` maps SOLVER.LOSS to
it, and each says whether it has a hybrid-score form (`hybrid_form`: defined on any score, so the
fused score can be trained with it too) or is tied to a head's vectors or cosines. A *term* adds named parts of its own:
FLOPS regularisation, distillation from a teacher, self-distillation from the fused score, I3's
query reconstruction. Every part sees one `LossInput`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from HybridPQA.heads import DENSE, HYBRID, SPARSE
from HybridPQA.losses.objectives import (
    SoftmaxClassifier,
    contrastive_loss,
    cosent,
    cosine_mse,
    distillation_loss,
    flops,
    kl_divergence,
    masked_logits,
    own_scores,
    reconstruction,
    symmetric_infonce,
    triplet,
)


@dataclass
class LossInput:
    """One micro-batch as every part sees it: {head: (Q, ...)} query and {head: (Q*C, ...)} context
    representations, `scores` {head or "hybrid": (Q, Q*C)} in-batch scores, positive (Q, Q*C) bool,
    graded `labels` (Q, C) or None, `teacher` (Q, C) scores (NaN = unknown) or None, I3's `targets`
    (Q*C, S) token ids or None, the optimizer step and the epoch."""
    query: dict
    context: dict
    scores: dict
    positive: torch.Tensor
    labels: torch.Tensor | None = None
    teacher: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    step: int = 0
    epoch: int = 0

    def graded(self) -> torch.Tensor:
        """(Q, C) labels of each question's own contexts; binary data: a positive is label 1."""
        return self.labels if self.labels is not None else own_scores(self.positive).float()


class Objective(nn.Module):
    """SOLVER.LOSS on one head's in-batch scores (or its vectors): `forward(head, scores, x)` -> scalar."""
    name = ""
    hybrid_form = True  # defined on any score, so the fused hybrid score can be trained with it too


class Contrastive(Objective):
    """InfoNCE: softmax cross-entropy of each question's first own positive."""
    name = "contrastive"

    def __init__(self, temperature: float = 0.5, broadcast: str = "global", **_):
        super().__init__()
        self.temperature, self.broadcast = temperature, broadcast

    def forward(self, head: str, scores: torch.Tensor, x: LossInput) -> torch.Tensor:
        return contrastive_loss(scores, x.positive, self.temperature, self.broadcast)


class SymmetricInfoNCE(Contrastive):
    """InfoNCE in both directions (question -> document and back)."""
    name = "symmetric-infonce"

    def forward(self, head, scores, x):
        return symmetric_infonce(scores, x.positive, self.temperature, self.broadcast)


class CoSENT(Objective):
    name = "cosent"

    def __init__(self, temperature: float = 0.5, **_):
        super().__init__()
        self.temperature = temperature

    def forward(self, head, scores, x):
        return cosent(own_scores(scores), x.graded(), self.temperature)


class CosineMSE(Objective):
    name, hybrid_form = "cosine-mse", False  # regresses cosines; the fused score is none

    def __init__(self, num_labels: int = 2, **_):
        super().__init__()
        self.num_labels = num_labels

    def forward(self, head, scores, x):
        return cosine_mse(own_scores(scores), x.graded(), self.num_labels)


class Triplet(Objective):
    name, hybrid_form = "triplet", False

    def __init__(self, margin: float = 5.0, distance: str = "euclidean", mining: str = "none",
                 broadcast: str = "global", **_):
        super().__init__()
        self.margin, self.distance, self.mining, self.broadcast = margin, distance, mining, broadcast

    def forward(self, head, scores, x):
        return triplet(x.query[head], x.context[head], x.positive, self.margin, self.distance, self.mining,
                       self.broadcast)


class Softmax(Objective):
    """Sentence-BERT's classifier over (u, v, |u - v|): one per head, trained with the model."""
    name, hybrid_form = "softmax", False

    def __init__(self, dims: dict[str, int] | None = None, num_labels: int = 2, product: bool = False, **_):
        super().__init__()
        self.classifiers = nn.ModuleDict({h: SoftmaxClassifier(d, num_labels, product) for h, d in (dims or {}).items()})

    def forward(self, head, scores, x):
        return self.classifiers[head].loss(x.query[head], x.context[head], x.graded())


OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (Contrastive, SymmetricInfoNCE, CoSENT, CosineMSE,
                                                                Triplet, Softmax)}


def lambda_at(step: int, lam: float, warmup_steps: int) -> float:
    """Quadratic warm-up lam * min(1, step / warmup)^2, counted in optimizer steps."""
    return lam * min(1.0, step / warmup_steps) ** 2


class Flops(nn.Module):
    """FLOPS regularisation of the sparse vectors, its lambdas warmed up quadratically (naver/splade)."""

    def __init__(self, lambda_q: float, lambda_d: float, warmup_steps: int = 1):
        super().__init__()
        self.lambda_q, self.lambda_d, self.warmup_steps = lambda_q, lambda_d, warmup_steps

    def lambdas(self, step: int) -> tuple[float, float]:
        return lambda_at(step, self.lambda_q, self.warmup_steps), lambda_at(step, self.lambda_d, self.warmup_steps)

    def forward(self, x: LossInput) -> dict[str, torch.Tensor]:
        if SPARSE not in x.query:
            return {}
        lambda_q, lambda_d = self.lambdas(x.step)
        return {"flops_q": lambda_q * flops(x.query[SPARSE].float()), "flops_d": lambda_d * flops(x.context[SPARSE].float())}


class Distillation(nn.Module):
    """Each head's (and the hybrid's) scores of a question's own contexts against a teacher's."""

    def __init__(self, weight: float, kind: str = "margin-mse", temperature: float = 0.5, teacher_temperature: float = 1.0):
        super().__init__()
        self.weight, self.kind, self.temperature, self.teacher_temperature = weight, kind, temperature, teacher_temperature

    def forward(self, x: LossInput) -> dict[str, torch.Tensor]:
        if x.teacher is None:
            return {}
        is_positive = own_scores(x.positive)
        return {f"distill_{head}": self.weight * distillation_loss(own_scores(s) / self.temperature, x.teacher,
                                                                   is_positive, self.kind, self.teacher_temperature)
                for head, s in x.scores.items()}


class SelfDistillation(nn.Module):
    """BGE-M3: the fused score, detached, teaches the dense and the sparse head (KL of the softmaxes)."""

    def __init__(self, weight: float, start_step: int = 0, temperature: float = 0.5, broadcast: str = "global"):
        super().__init__()
        self.weight, self.start_step, self.temperature, self.broadcast = weight, start_step, temperature, broadcast

    def forward(self, x: LossInput) -> dict[str, torch.Tensor]:
        if x.step < self.start_step or HYBRID not in x.scores:
            return {}
        target, _ = masked_logits(x.scores[HYBRID].detach(), x.positive, self.temperature, self.broadcast)
        return {f"self_distill_{head}": self.weight * kl_divergence(
            masked_logits(x.scores[head], x.positive, self.temperature, self.broadcast)[0], target)
            for head in (DENSE, SPARSE)}


class Reconstruction(nn.Module):
    """I3: each context's pseudo-query reconstructed from its slots, weighted WEIGHT * DECAY ** -epoch."""

    def __init__(self, weight: float, decay: float = 10.0):
        super().__init__()
        self.weight, self.decay = weight, decay

    def beta(self, epoch: int) -> float:
        return self.weight * self.decay ** -epoch

    def forward(self, x: LossInput) -> dict[str, torch.Tensor]:
        if "pseudo_query" not in x.context or x.targets is None or self.beta(x.epoch) <= 0:
            return {}
        return {"reconstruction": self.beta(x.epoch) * reconstruction(x.context["pseudo_query"], x.targets)}
