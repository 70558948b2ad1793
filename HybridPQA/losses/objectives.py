"""Training objectives over one in-batch layout, as pure functions of tensors.

The layout: Q questions, each with its own C contexts (first its positives, then negatives), all
Q*C contexts in one batch. `scores` and `positive` are (Q, Q*C); `labels` are (Q, C) graded labels
of each question's own contexts (0 for sampled negatives); `query` (Q, D) and `context` (Q*C, D)
are vectors.

- `contrastive_loss`: softmax cross-entropy of each question's first own positive (InfoNCE);
- `symmetric_infonce`: plus the document -> question direction (CLIP; sentence-transformers'
  MultipleNegativesSymmetricRankingLoss);
- `cosent`: CoSENT (Su 2022) over each question's graded pairs;
- Sentence-BERT's three (Reimers & Gurevych 2019): `SoftmaxClassifier` over (u, v, |u-v|[, u*v]),
  `cosine_mse` regression of the cosine onto the graded label, `triplet` with a margin.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def own_columns(num_q: int, num_ctx: int, device=None) -> torch.Tensor:
    """(Q, Q*C) bool: question i's own contexts, columns i*C..(i+1)*C-1."""
    per_q = num_ctx // num_q
    return torch.arange(num_ctx, device=device)[None, :] // per_q == torch.arange(num_q, device=device)[:, None]


def own_scores(scores: torch.Tensor) -> torch.Tensor:
    """(Q, Q*C) -> (Q, C): each question's scores of its own contexts."""
    num_q = scores.shape[0]
    return scores[own_columns(*scores.shape, device=scores.device)].view(num_q, -1)


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


def symmetric_infonce(scores: torch.Tensor, positive: torch.Tensor, temperature: float,
                      broadcast: str = "global") -> torch.Tensor:
    """Mean of query -> document InfoNCE and document -> query: each question's target document
    picks its question among the batch's Q questions (a question it is also a positive of is left out)."""
    forward = contrastive_loss(scores, positive, temperature, broadcast)
    _, target = masked_logits(scores, positive, temperature, broadcast)
    by_document = scores[:, target].T.float() / temperature  # (Q docs, Q questions)
    others = positive[:, target].T & ~torch.eye(len(target), dtype=torch.bool, device=scores.device)
    backward = F.cross_entropy(by_document.masked_fill(others, float("-inf")),
                               torch.arange(len(target), device=scores.device))
    return (forward + backward) / 2


def cosent(scores: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """log(1 + sum over pairs of one question with label_i > label_j of exp((s_j - s_i) / T)).
    scores, labels: (Q, C) of each question's own contexts. 0 when no question has two grades."""
    s = scores.float() / temperature
    diff = s[:, None, :] - s[:, :, None]  # [q, i, j] = s_j - s_i
    ordered = labels[:, :, None] > labels[:, None, :]  # label_i > label_j
    return torch.logsumexp(torch.cat([diff[ordered], diff.new_zeros(1)]), dim=0)


def cosine_mse(cosines: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """MSE between (Q, C) cosine similarities and labels / (num_labels - 1), in [0, 1]."""
    return F.mse_loss(cosines.float(), labels.float() / (num_labels - 1))


def distances(query: torch.Tensor, context: torch.Tensor, kind: str) -> torch.Tensor:
    """(Q, D), (N, D) -> (Q, N) Euclidean distances or cosine distances 1 - cos."""
    query, context = query.float(), context.float()
    if kind == "cosine":
        return 1 - F.normalize(query, dim=-1) @ F.normalize(context, dim=-1).T
    return torch.cdist(query, context)


def triplet(query: torch.Tensor, context: torch.Tensor, positive: torch.Tensor, margin: float,
            distance: str = "euclidean", mining: str = "none", broadcast: str = "global") -> torch.Tensor:
    """Mean of max(0, d(q, p) - d(q, n) + margin). "none": p = the question's first own positive,
    n = each of its own negatives. "batch-hard" (Hermans et al. 2017): p = its farthest positive,
    n = its nearest negative among the batch's contexts (its own with broadcast "local")."""
    dist = distances(query, context, distance)
    own = own_columns(*positive.shape, device=positive.device)
    if mining == "batch-hard":
        seen = own if broadcast == "local" else torch.ones_like(own)
        hardest_positive = dist.masked_fill(~(positive & own), float("-inf")).max(1).values
        hardest_negative = dist.masked_fill(positive | ~seen, float("inf")).min(1).values
        return F.relu(hardest_positive - hardest_negative + margin).mean()
    _, target = masked_logits(dist, positive, 1.0)
    to_positive = dist.gather(1, target[:, None])
    negatives = own & ~positive
    return F.relu(to_positive - dist + margin)[negatives].mean()


class SoftmaxClassifier(nn.Module):
    """Sentence-BERT's classification objective: (Q, D) u, (Q, C, D) v -> (Q, C, num_labels) logits of
    a linear layer over (u, v, |u - v|), with u * v when `product`."""

    def __init__(self, dim: int, num_labels: int, product: bool = False):
        super().__init__()
        self.product = product
        self.linear = nn.Linear((4 if product else 3) * dim, num_labels)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        u = u[:, None, :].expand_as(v)
        features = [u, v, (u - v).abs()] + ([u * v] if self.product else [])
        return self.linear(torch.cat(features, dim=-1).to(self.linear.weight.dtype))

    def loss(self, query: torch.Tensor, context: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each own pair's label; query (Q, D), context (Q*C, D), labels (Q, C)."""
        logits = self(query.float(), context.float().view(*labels.shape, -1))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long())


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


def flops(reps: torch.Tensor) -> torch.Tensor:
    """(N, V) -> scalar: sum over the vocabulary of the squared mean absolute weight (Paria et al., 2020)."""
    return reps.abs().mean(dim=0).pow(2).sum()


def reconstruction(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """I3's query reconstruction: (N, S, V) slot logits, (N, S) target token ids (-100 = none) ->
    mean cross-entropy over the slots that have a target; 0 when none has."""
    known = targets != -100
    if not known.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known].float(), targets[known])
