"""Hand-computed values for the contrastive loss, FLOPS, its warm-up, and fusion."""
import math

import numpy as np
import torch

from HybridPQA.losses.parts import Contrastive, Distillation, Flops, SelfDistillation
from HybridPQA.losses import HybridLoss, contrastive_loss, flops, lambda_at
from HybridPQA.scoring import Fusion

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


def test_hybrid_loss_parts_and_fused_term():
    q = {"dense": torch.eye(2), "sparse": torch.tensor([[1.0, 0.0], [0.0, 2.0]])}
    c = {"dense": torch.eye(2), "sparse": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    positive = torch.eye(2, dtype=torch.bool)
    loss = HybridLoss(Contrastive(temperature=1.0), Fusion(alpha=0.5), [Flops(0.1, 0.0, 1)], hybrid_weight=2.0)
    parts = loss(q, c, positive, step=1)  # past the lambdas' warm-up
    assert set(parts) == {"contrastive_dense", "contrastive_sparse", "contrastive_hybrid", "flops_q", "flops_d"}
    assert math.isclose(parts["contrastive_dense"].item(), ce([1, 0], 0), rel_tol=1e-6)
    assert math.isclose(parts["contrastive_sparse"].item(), (ce([1, 0], 0) + ce([0, 2], 1)) / 2, rel_tol=1e-6)
    fused = (ce([1, 0], 0) + ce([0, 1.5], 1)) / 2
    assert math.isclose(parts["contrastive_hybrid"].item(), 2.0 * fused, rel_tol=1e-6)
    assert math.isclose(parts["flops_q"].item(), 0.1 * (0.5 ** 2 + 1.0 ** 2), rel_tol=1e-6)
    assert parts["flops_d"].item() == 0.0


def test_fusion_by_hand():
    assert np.allclose(Fusion(alpha=0.25).fuse(np.array([[2.0, 0.0]]), np.array([[0.0, 4.0]])), [[0.5, 3.0]])


def test_margin_mse_by_hand_skips_unknown_teacher_scores():
    from HybridPQA.losses import distillation_loss

    student = torch.tensor([[3.0, 1.0, 2.0], [0.0, 1.0, 5.0]])
    teacher = torch.tensor([[4.0, 0.0, float("nan")], [2.0, 2.0, 1.0]])
    positive = torch.tensor([[True, False, False], [True, False, False]])
    # margins pos - neg: student (2), (-1, -5); teacher (4), (0, 1); the NaN pair is left out
    expected = ((2 - 4) ** 2 + (-1 - 0) ** 2 + (-5 - 1) ** 2) / 3
    assert math.isclose(distillation_loss(student, teacher, positive, "margin-mse").item(), expected, rel_tol=1e-6)


def test_listwise_kl_is_zero_for_a_perfect_student_and_ignores_unknown_scores():
    from HybridPQA.losses import distillation_loss

    positive = torch.tensor([[True, False, False]])
    teacher = torch.tensor([[2.0, float("nan"), 0.5]])
    perfect = torch.tensor([[2.0, -9.0, 0.5]])  # the unscored context does not matter
    assert distillation_loss(perfect, teacher, positive, "kl").item() < 1e-6
    p = torch.tensor([2.0, 0.5]).softmax(0)
    q = torch.tensor([0.0, 1.0]).softmax(0)
    expected = float((p * (p / q).log()).sum())
    got = distillation_loss(torch.tensor([[0.0, 3.0, 1.0]]), teacher, positive, "kl").item()
    assert math.isclose(got, expected, rel_tol=1e-5)


def test_distillation_and_self_distillation_parts_and_gradients():
    torch.manual_seed(0)
    query = {"dense": torch.randn(2, 4, requires_grad=True), "sparse": torch.rand(2, 6, requires_grad=True)}
    context = {"dense": torch.randn(4, 4), "sparse": torch.rand(4, 6)}
    teacher = torch.tensor([[1.0, 0.0], [2.0, -1.0]])
    terms = [Distillation(1.0, temperature=1.0), SelfDistillation(0.5, temperature=1.0)]
    parts = HybridLoss(Contrastive(temperature=1.0), Fusion(alpha=0.5), terms)(query, context, POSITIVE, teacher)
    assert {"distill_dense", "distill_sparse", "distill_hybrid", "self_distill_dense", "self_distill_sparse"} <= set(parts)
    assert "self_distill_dense" not in HybridLoss(Contrastive(temperature=1.0))(query, context, POSITIVE)  # off unless asked
    # the fused teacher is detached: self-distilling the dense head moves only the dense vectors
    parts["self_distill_dense"].backward()
    assert query["dense"].grad.abs().sum() > 0 and query["sparse"].grad is None
