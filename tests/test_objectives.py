"""Hand-computed values for SOLVER.LOSS's objectives, I3's reconstruction loss and the static query heads."""
import math

import pytest
import torch

from HybridPQA.config import load_config
from HybridPQA.errors import InputError
from HybridPQA.losses import HybridLoss, check_objective, own_scores
from HybridPQA.losses.parts import OBJECTIVES, CoSENT, Reconstruction
from HybridPQA.losses.objectives import (
    SoftmaxClassifier,
    cosent,
    cosine_mse,
    reconstruction,
    symmetric_infonce,
    triplet,
)
from HybridPQA.modeling.static import StaticDenseHead, StaticSparseHead
from test_losses import POSITIVE, SCORES, ce  # 2 questions x 2 own contexts; positives in columns 0 and 2

def test_symmetric_infonce_adds_the_document_to_question_direction():
    forward = (ce([2, 0, 1, 0], 0) + ce([0, 1, 3, 1], 2)) / 2
    backward = (ce([2, 0], 0) + ce([1, 3], 1)) / 2  # document 0 scored by both questions, then document 2
    assert math.isclose(symmetric_infonce(SCORES, POSITIVE, 1.0).item(), (forward + backward) / 2, rel_tol=1e-6)


def test_symmetric_infonce_leaves_out_a_question_the_document_also_answers():
    positive = POSITIVE.clone()
    positive[1, 0] = True  # document 0 is a positive of question 1 too: no negative of question 0's pick
    forward = (ce([2, 0, 1, 0], 0) + ce([1, 3, 1], 1)) / 2  # question 1 drops column 0
    backward = (ce([2], 0) + ce([1, 3], 1)) / 2
    assert math.isclose(symmetric_infonce(SCORES, positive, 1.0).item(), (forward + backward) / 2, rel_tol=1e-6)


def test_cosent_by_hand():
    own = torch.tensor([[2.0, 0.0], [3.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert math.isclose(cosent(own, labels, 1.0).item(), math.log(1 + 2 * math.exp(-2)), rel_tol=1e-6)
    graded = cosent(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]]), 0.5)
    expected = math.log(1 + math.exp(2) + math.exp(-2) + math.exp(-4))  # (s_j - s_i) / T for 2>1, 2>0, 1>0
    assert math.isclose(graded.item(), expected, rel_tol=1e-6)
    assert cosent(own, torch.zeros(2, 2), 1.0).item() == pytest.approx(0.0)  # no ordered pair: log(1)


def test_cosine_mse_scales_labels_to_unit_range():
    value = cosine_mse(torch.tensor([[0.5, -0.2]]), torch.tensor([[2.0, 0.0]]), num_labels=3)
    assert math.isclose(value.item(), ((0.5 - 1) ** 2 + 0.2 ** 2) / 2, rel_tol=1e-6)


QUERY = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
CONTEXT = torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 2.0], [1.0, 1.0]])


def test_triplet_euclidean_own_negatives():
    # q0: d(pos) 1, d(neg c1) 3 -> 0; q1: d(pos c2) 1, d(neg c3) 0 -> 2
    assert math.isclose(triplet(QUERY, CONTEXT, POSITIVE, 1.0).item(), 1.0, rel_tol=1e-6)


def test_triplet_batch_hard_takes_the_nearest_negative_of_the_batch():
    # q0: positive at 1, nearest non-positive c3 at sqrt 2; q1: positive at 1, nearest c3 at 0
    expected = (max(0.0, 1 - math.sqrt(2) + 1) + 2) / 2
    value = triplet(QUERY, CONTEXT, POSITIVE, 1.0, mining="batch-hard")
    assert math.isclose(value.item(), expected, rel_tol=1e-6)
    local = triplet(QUERY, CONTEXT, POSITIVE, 1.0, mining="batch-hard", broadcast="local")  # q0 sees only c1
    assert math.isclose(local.item(), (0 + 2) / 2, rel_tol=1e-6)


def test_triplet_cosine_distance():
    query, context = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    value = triplet(query, context, torch.tensor([[True, False]]), 0.5, distance="cosine")
    assert math.isclose(value.item(), 0 - (1 - 1 / math.sqrt(2)) + 0.5, rel_tol=1e-6)


@pytest.mark.parametrize("product", [False, True])
def test_softmax_classifier_by_hand(product):
    classifier = SoftmaxClassifier(1, 2, product)
    with torch.no_grad():
        weight = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
        classifier.linear.weight.copy_(torch.tensor([row + [0.5 * i] for i, row in enumerate(weight)] if product
                                                    else weight))
        classifier.linear.bias.zero_()
    u, v, labels = torch.tensor([[2.0]]), torch.tensor([[3.0], [1.0]]), torch.tensor([[1.0, 0.0]])
    # features (u, v, |u-v|[, u*v]) = (2, 3, 1[, 6]) and (2, 1, 1[, 2]): logits (2, 4[+3]) and (2, 2[+1])
    first, second = ([2, 7], [2, 3]) if product else ([2, 4], [2, 2])
    expected = (ce(first, 1) + ce(second, 0)) / 2
    assert math.isclose(classifier.loss(u, v, labels).item(), expected, rel_tol=1e-6)


def test_reconstruction_counts_only_slots_with_a_target():
    logits = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]],
                           [[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]]], requires_grad=True)
    targets = torch.tensor([[1, -100], [-100, -100]])  # the second document has no pseudo-query
    value = reconstruction(logits, targets)
    assert math.isclose(value.item(), ce([0, 2, 0], 1), rel_tol=1e-6)
    value.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 1].abs().sum() == 0
    none = reconstruction(logits, torch.full((2, 2), -100))
    assert none.item() == 0.0


def test_hybrid_loss_names_parts_by_objective():
    query = {"dense": QUERY, "sparse": QUERY.abs()}
    context = {"dense": CONTEXT, "sparse": CONTEXT.abs(), "pseudo_query": torch.zeros(4, 2, 3)}
    labels = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    targets = torch.tensor([[1, 2], [-100, -100], [-100, -100], [-100, -100]])
    loss = HybridLoss(CoSENT(temperature=1.0), terms=[Reconstruction(1.0, 10.0)], hybrid_weight=1.0)
    parts = loss(query, context, POSITIVE, labels=labels, targets=targets, epoch=1)
    assert list(parts) == ["cosent_dense", "cosent_sparse", "cosent_hybrid", "reconstruction"]
    assert math.isclose(parts["reconstruction"].item(), 0.1 * math.log(3), rel_tol=1e-5)  # beta = 10 ** -1
    assert torch.equal(parts["cosent_dense"], cosent(own_scores(QUERY @ CONTEXT.T), labels, 1.0))


def test_config_choices_are_the_objectives():
    from HybridPQA.config.validate import CHOICES

    assert set(CHOICES["RETRIEVER.SOLVER.LOSS"]) == set(OBJECTIVES)  # the config offers every objective, no other


def test_vector_objectives_have_no_hybrid_form():
    with pytest.raises(InputError, match="HYBRID_LOSS_WEIGHT"):
        check_objective(load_config(None, ["RETRIEVER.SOLVER.LOSS", "triplet",
                                           "RETRIEVER.SOLVER.HYBRID_LOSS_WEIGHT", "0.5"]).RETRIEVER.SOLVER)
    with pytest.raises(InputError, match="FUNC 'cosine'"):
        load_config(None, ["RETRIEVER.SOLVER.LOSS", "cosine-mse"])


def test_static_sparse_head_is_idf_of_the_query_terms():
    mask = torch.tensor([False, True, True, True, True])  # term 0 is [PAD]
    head = StaticSparseHead(mask)
    head.init_idf([[1, 2], [1], [3]])
    idf = [math.log1p((3 - df + 0.5) / (df + 0.5)) for df in (0, 2, 1, 1, 0)]
    assert torch.allclose(head.weight, torch.tensor(idf), atol=1e-6)
    ids, attention = torch.tensor([[1, 1, 4, 0]]), torch.tensor([[1, 1, 1, 0]])
    expected = torch.tensor([[0.0, idf[1], 0.0, 0.0, idf[4]]])  # each query term once, padding none
    assert torch.allclose(head(ids, attention), expected, atol=1e-6)


def test_static_dense_head_means_the_non_special_embeddings():
    embeddings = torch.tensor([[9.0, 9.0], [1.0, 0.0], [3.0, 2.0], [7.0, 7.0]])
    head = StaticDenseHead(embeddings, special=torch.tensor([False, False, False, True]))  # 3 = [CLS]
    ids, attention = torch.tensor([[3, 1, 2, 0]]), torch.tensor([[1, 1, 1, 0]])
    assert torch.allclose(head(ids, attention), torch.tensor([[2.0, 1.0]]))
