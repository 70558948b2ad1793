"""Hand-computed values for the contrastive loss, FLOPS, its warm-up, and fusion."""
import math

import numpy as np
import torch

from HybridPQA.losses import contrastive_loss, flops, hybrid_loss, lambda_at, similarity
from HybridPQA.retrieval.fusion import Fusion, fuse_scores

# 2 questions x 2 contexts; each question's first own context is its positive
SCORES = torch.tensor([[2.0, 0.0, 1.0, 0.0],
                       [0.0, 1.0, 3.0, 1.0]])
POSITIVE = torch.tensor([[True, False, False, False],
                         [False, False, True, False]])


def ce(logits, target):
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


def test_global_loss_by_hand():
    expected = (ce([2, 0, 1, 0], 0) + ce([0, 1, 3, 1], 2)) / 2
    assert math.isclose(contrastive_loss(SCORES, POSITIVE, 1.0, "global").item(), expected, rel_tol=1e-6)


def test_local_loss_scores_own_contexts_only():
    expected = (ce([2, 0], 0) + ce([3, 1], 0)) / 2
    assert math.isclose(contrastive_loss(SCORES, POSITIVE, 1.0, "local").item(), expected, rel_tol=1e-6)


def test_temperature_divides_scores():
    expected = (ce([4, 0, 2, 0], 0) + ce([0, 2, 6, 2], 2)) / 2
    assert math.isclose(contrastive_loss(SCORES, POSITIVE, 0.5, "global").item(), expected, rel_tol=1e-6)


def test_other_positives_leave_the_denominator():
    positive = POSITIVE.clone()
    positive[0, 1] = True  # question 0 has a second positive: no negative, not a target either
    expected = (ce([2, 1, 0], 0) + ce([0, 1, 3, 1], 2)) / 2
    assert math.isclose(contrastive_loss(SCORES, positive, 1.0, "global").item(), expected, rel_tol=1e-6)


def test_flops_by_hand():
    reps = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    assert math.isclose(flops(reps).item(), 2.0 ** 2 + 0.0 + 1.0 ** 2)


def test_lambda_warmup_is_quadratic_in_steps():
    assert lambda_at(0, 1e-3, 100) == 0.0
    assert math.isclose(lambda_at(50, 1e-3, 100), 0.25e-3)
    assert lambda_at(100, 1e-3, 100) == lambda_at(500, 1e-3, 100) == 1e-3


def test_cosine_similarity():
    q, c = torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 4.0], [4.0, -3.0]])
    assert torch.allclose(similarity(q, c, "cosine"), torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(similarity(q, c, "dot"), torch.tensor([[25.0, 0.0]]))


def test_hybrid_loss_parts_and_fused_term():
    q = {"dense": torch.eye(2), "sparse": torch.tensor([[1.0, 0.0], [0.0, 2.0]])}
    c = {"dense": torch.eye(2), "sparse": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    positive = torch.eye(2, dtype=torch.bool)
    parts = hybrid_loss(q, c, positive, temperature=1.0, broadcast="global", func="dot", alpha=0.5,
                        hybrid_weight=2.0, lambda_q=0.1, lambda_d=0.0)
    assert set(parts) == {"contrastive_dense", "contrastive_sparse", "contrastive_hybrid", "flops_q", "flops_d"}
    assert math.isclose(parts["contrastive_dense"].item(), ce([1, 0], 0), rel_tol=1e-6)
    assert math.isclose(parts["contrastive_sparse"].item(), (ce([1, 0], 0) + ce([0, 2], 1)) / 2, rel_tol=1e-6)
    fused = (ce([1, 0], 0) + ce([0, 1.5], 1)) / 2
    assert math.isclose(parts["contrastive_hybrid"].item(), 2.0 * fused, rel_tol=1e-6)
    assert math.isclose(parts["flops_q"].item(), 0.1 * (0.5 ** 2 + 1.0 ** 2), rel_tol=1e-6)
    assert parts["flops_d"].item() == 0.0


def test_fusion_by_hand():
    assert np.allclose(fuse_scores(np.array([[2.0, 0.0]]), np.array([[0.0, 4.0]]), Fusion(alpha=0.25)), [[0.5, 3.0]])
