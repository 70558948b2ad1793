"""The bi-encoder loss, composed: an objective on each head's in-batch scores (and, weighted, on the
hybrid score's), plus terms that add named parts of their own (losses.parts).

The hybrid score is `scoring.Fusion`, the one evaluation ranks with. In a batch it is fused over the
columns each question's softmax sees (every in-batch context, or its own with BROADCAST local): the
in-batch stand-in for evaluation's fusion over a query's candidates or the whole corpus.
"""
from __future__ import annotations

import torch
from torch import nn

from HybridPQA.heads import DENSE, HEADS, HYBRID, SPARSE
from HybridPQA.losses.objectives import own_columns
from HybridPQA.losses.parts import Contrastive, Flops, LossInput, Objective
from HybridPQA.scoring import Fusion


class HybridLoss(nn.Module):
    """Called with {head: (Q, D) / (Q, V) / (Q, L, D)} query and {head: (Q*C, ...)} context
    representations, positive (Q, Q*C) bool, teacher (Q, C) scores (NaN = unknown) or None, the
    optimizer step, graded `labels` (Q, C), I3's `targets` (Q*C, S) and the epoch -> named parts:
    <objective>_<head> (e.g. contrastive_dense, cosent_hybrid), then each term's (flops_q, flops_d,
    distill_<head>, self_distill_<head>, reconstruction)."""

    def __init__(self, objective: Objective | None = None, fusion: Fusion = Fusion(), terms: list[nn.Module] = (),
                 *, func: str = "dot", broadcast: str = "global", hybrid_weight: float = 0.0):
        super().__init__()
        self.objective = objective if objective is not None else Contrastive()
        if hybrid_weight > 0 and not self.objective.hybrid_form:
            raise ValueError(f"objective {self.objective.name!r} has no hybrid-score form")
        self.fusion = fusion.surrogate()  # what training fuses with: `fusion` itself unless it has no gradient
        self.terms = nn.ModuleList(terms)
        self.func, self.broadcast, self.hybrid_weight = func, broadcast, hybrid_weight

    def lambdas(self, step: int) -> tuple[float, float]:
        """FLOPS' (lambda_q, lambda_d) at optimizer step `step`, for the log."""
        flops = next((t for t in self.terms if isinstance(t, Flops)), None)
        return flops.lambdas(step) if flops is not None else (0.0, 0.0)

    def columns(self, positive: torch.Tensor) -> torch.Tensor:
        """(Q, Q*C) bool: the contexts each question is scored (and its hybrid fused) against."""
        if self.broadcast == "local":
            return own_columns(*positive.shape, device=positive.device)
        return torch.ones_like(positive, dtype=torch.bool)

    def scores(self, query: dict, context: dict, positive: torch.Tensor) -> dict[str, torch.Tensor]:
        """{scorer: (Q, Q*C)} in-batch scores of every head, and the hybrid where there are dense and sparse."""
        unit = self.func == "cosine"
        scores = {h: HEADS[h].score(HEADS[h].unit(query[h]) if unit else query[h],
                                    HEADS[h].unit(context[h]) if unit else context[h])
                  for h in HEADS if h in query}
        if {DENSE, SPARSE} <= set(scores):
            scores[HYBRID] = self.fusion.fuse(scores[DENSE].float(), scores[SPARSE].float(), self.columns(positive))
        return scores

    def forward(self, query: dict, context: dict, positive: torch.Tensor, teacher: torch.Tensor | None = None,
                step: int = 0, labels: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                epoch: int = 0) -> dict[str, torch.Tensor]:
        x = LossInput(query, context, self.scores(query, context, positive), positive, labels, teacher, targets,
                      step, epoch)
        name = self.objective.name.replace("-", "_")
        parts = {f"{name}_{h}": self.objective(h, s, x) for h, s in x.scores.items() if h != HYBRID}
        if self.hybrid_weight > 0 and HYBRID in x.scores:
            parts[f"{name}_{HYBRID}"] = self.hybrid_weight * self.objective(HYBRID, x.scores[HYBRID], x)
        for term in self.terms:
            parts.update(term(x))
        return parts
