"""Training losses. Each returns named, already weighted parts; the training loop sums and logs them.

- in-batch contrastive loss per head (and optionally on the fused score), FLOPS regularisation;
- the cross-encoder's listwise loss over each question's own contexts;
- distillation from teacher scores (MarginMSE, listwise KL) and self-distillation between heads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def maxsim(queries: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
    """(Q, Lq, D), (N, Ld, D) token vectors, padding rows zero -> (Q, N): for each query token its
    best context token's similarity, summed over query tokens (ColBERT). Padding never matches."""
    sims = torch.einsum("qid,njd->qnij", queries, contexts)
    padding = contexts.abs().sum(-1) == 0  # (N, Ld)
    sims = sims.masked_fill(padding[None, :, None, :], float("-inf")).amax(-1)
    query_padding = queries.abs().sum(-1) == 0  # (Q, Lq)
    return sims.masked_fill(query_padding[:, None, :], 0.0).sum(-1)


def similarity(queries: torch.Tensor, contexts: torch.Tensor, func: str = "dot") -> torch.Tensor:
    """(Q, D), (N, D) -> (Q, N) dot products or cosine similarities; (Q, L, D) token vectors -> MaxSim."""
    if queries.dim() == 3:
        return maxsim(queries, contexts)
    if func == "cosine":
        queries, contexts = F.normalize(queries, dim=-1), F.normalize(contexts, dim=-1)
    return queries @ contexts.T


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


def hybrid_loss(query: dict[str, torch.Tensor], context: dict[str, torch.Tensor], positive: torch.Tensor, *,
                temperature: float, broadcast: str, func: str, alpha: float, hybrid_weight: float,
                lambda_q: float, lambda_d: float, teacher: torch.Tensor | None = None, distill: str = "margin-mse",
                distill_weight: float = 0.0, teacher_temperature: float = 1.0,
                self_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Named parts: contrastive_<head> (dense, sparse, late, hybrid), flops_{q,d} (weighted by the
    current lambdas), distill_<head> against `teacher` (Q, C) scores, self_distill_<head>."""
    scores = {head: similarity(query[head], context[head], func) for head in query}
    parts = {f"contrastive_{h}": contrastive_loss(s, positive, temperature, broadcast) for h, s in scores.items()}
    fused = alpha * scores["dense"] + (1 - alpha) * scores["sparse"] if {"dense", "sparse"} <= set(scores) else None
    if hybrid_weight > 0 and fused is not None:
        parts["contrastive_hybrid"] = hybrid_weight * contrastive_loss(fused, positive, temperature, broadcast)
    if teacher is not None and distill_weight > 0:
        is_positive = own_scores(positive)
        students = {**scores, **({"hybrid": fused} if fused is not None else {})}
        for head, s in students.items():
            parts[f"distill_{head}"] = distill_weight * distillation_loss(
                own_scores(s) / temperature, teacher, is_positive, distill, teacher_temperature)
    if self_weight > 0 and fused is not None:  # BGE-M3: the fused score, detached, teaches each head
        target, _ = masked_logits(fused.detach(), positive, temperature, broadcast)
        for head in ("dense", "sparse"):
            student, _ = masked_logits(scores[head], positive, temperature, broadcast)
            parts[f"self_distill_{head}"] = self_weight * kl_divergence(student, target)
    if "sparse" in query:
        parts["flops_q"] = lambda_q * flops(query["sparse"].float())
        parts["flops_d"] = lambda_d * flops(context["sparse"].float())
    return parts


def cross_loss(scores: torch.Tensor, positive: torch.Tensor, *, teacher: torch.Tensor | None = None,
               distill: str = "margin-mse", distill_weight: float = 0.0,
               teacher_temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """(Q, C) cross-encoder logits of each question's own contexts; positive (Q, Q*C).
    Listwise softmax cross-entropy of the first positive against the question's negatives."""
    num_q, per_q = scores.shape
    full = scores.new_full((num_q, num_q * per_q), float("-inf"))
    full[own_columns(num_q, num_q * per_q, device=scores.device)] = scores.reshape(-1)
    parts = {"contrastive_cross": contrastive_loss(full, positive, 1.0, "local")}
    if teacher is not None and distill_weight > 0:
        parts["distill_cross"] = distill_weight * distillation_loss(scores, teacher, own_scores(positive), distill,
                                                                    teacher_temperature)
    return parts
