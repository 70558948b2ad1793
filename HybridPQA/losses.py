"""In-batch contrastive loss per head, FLOPS regularisation and its quadratic warm-up.

`hybrid_loss` returns named, already weighted parts; the training loop sums and logs them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity(queries: torch.Tensor, contexts: torch.Tensor, func: str = "dot") -> torch.Tensor:
    """(Q, D), (N, D) -> (Q, N) dot products or cosine similarities."""
    if func == "cosine":
        queries, contexts = F.normalize(queries, dim=-1), F.normalize(contexts, dim=-1)
    return queries @ contexts.T


def contrastive_loss(scores: torch.Tensor, positive: torch.Tensor, temperature: float,
                     broadcast: str = "global") -> torch.Tensor:
    """Softmax cross-entropy of each question's first own positive.

    scores, positive: (Q, Q*C), question i's own contexts at columns i*C..(i+1)*C-1.
    "local" scores a question against its own C contexts only; "global" against all Q*C.
    Every other positive of the question is removed from the denominator (it is no negative).
    """
    num_q, num_ctx = scores.shape
    per_q = num_ctx // num_q
    own = torch.zeros_like(positive)
    for i in range(num_q):
        own[i, i * per_q:(i + 1) * per_q] = True
    target = (positive & own).float().argmax(dim=1)  # first own positive, global column
    drop = positive.clone()
    drop[torch.arange(num_q), target] = False
    if broadcast == "local":
        drop |= ~own
    logits = (scores / temperature).masked_fill(drop, float("-inf"))
    return F.cross_entropy(logits.float(), target)


def flops(reps: torch.Tensor) -> torch.Tensor:
    """(N, V) -> scalar: sum over the vocabulary of the squared mean absolute weight (Paria et al., 2020)."""
    return reps.abs().mean(dim=0).pow(2).sum()


def lambda_at(step: int, lam: float, warmup_steps: int) -> float:
    """Quadratic warm-up lam * min(1, step / warmup)^2, counted in optimizer steps."""
    return lam * min(1.0, step / warmup_steps) ** 2


def hybrid_loss(query: dict[str, torch.Tensor], context: dict[str, torch.Tensor], positive: torch.Tensor, *,
                temperature: float, broadcast: str, func: str, alpha: float, hybrid_weight: float,
                lambda_q: float, lambda_d: float) -> dict[str, torch.Tensor]:
    """Named parts: contrastive_{dense,sparse[,hybrid]} and flops_{q,d} (weighted by the current lambdas)."""
    scores = {head: similarity(query[head], context[head], func) for head in query}
    parts = {f"contrastive_{h}": contrastive_loss(s, positive, temperature, broadcast) for h, s in scores.items()}
    if hybrid_weight > 0 and len(scores) == 2:
        fused = alpha * scores["dense"] + (1 - alpha) * scores["sparse"]
        parts["contrastive_hybrid"] = hybrid_weight * contrastive_loss(fused, positive, temperature, broadcast)
    if "sparse" in query:
        parts["flops_q"] = lambda_q * flops(query["sparse"].float())
        parts["flops_d"] = lambda_d * flops(context["sparse"].float())
    return parts
