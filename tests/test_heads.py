"""The heads on tiny tensors: padding must never count."""
import math

import torch
from torch import nn

import pytest

from HybridPQA.modeling import splade_kernel
from HybridPQA.modeling.heads import DenseHead, SpladeHead

MASK = torch.tensor([[1, 1, 0]])  # third token is padding
HIDDEN = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])


def test_dense_cls_and_mean_ignore_padding():
    assert torch.equal(DenseHead(2, "cls")(HIDDEN, MASK), torch.tensor([[1.0, 2.0]]))
    assert torch.equal(DenseHead(2, "mean")(HIDDEN, MASK), torch.tensor([[2.0, 3.0]]))
    assert DenseHead(2, "cls", projection_dim=5)(HIDDEN, MASK).shape == (1, 5)


LOGITS = torch.tensor([[[1.0, -2.0, 0.5, 3.0],
                        [2.0, -1.0, -0.5, 1.0],
                        [9.0, 9.0, 9.0, 9.0]]])  # padding row: must be ignored


def test_splade_max_by_hand():
    head = SpladeHead(torch.tensor([True, True, True, False]), agg="max")
    out = head(LOGITS.clone(), MASK)
    expected = torch.tensor([[math.log1p(2.0), 0.0, math.log1p(0.5), 0.0]])  # last term masked out
    assert torch.allclose(out, expected)


def test_splade_sum_by_hand():
    head = SpladeHead(torch.ones(4, dtype=torch.bool), agg="sum")
    out = head(LOGITS.clone(), MASK)
    expected = torch.tensor([[math.log1p(1.0) + math.log1p(2.0), 0.0, math.log1p(0.5), math.log1p(3.0) + math.log1p(1.0)]])
    assert torch.allclose(out, expected)


def test_splade_top_k_keeps_largest():
    head = SpladeHead(torch.ones(4, dtype=torch.bool), agg="max", top_k=2)
    out = head(LOGITS.clone(), MASK)
    assert torch.allclose(out, torch.tensor([[math.log1p(2.0), 0.0, 0.0, math.log1p(3.0)]]))


@pytest.mark.parametrize("tile_tokens", [6, 2048])  # one text per tile, or all in one
def test_max_pooled_projection_matches_full_logits_values_and_gradients(tile_tokens, monkeypatch):
    monkeypatch.setattr(splade_kernel, "TILE_TOKENS", tile_tokens)
    torch.manual_seed(0)
    decoder = nn.Linear(8, 50)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 4:] = 0
    head = SpladeHead(torch.rand(50) > 0.2, agg="max", top_k=20, chunk=16)
    hidden = torch.randn(3, 6, 8)
    results = []
    for fast in (True, False):
        h = hidden.clone().requires_grad_()
        decoder.zero_grad()
        out = head(h, mask, decoder) if fast else head(decoder(h), mask)
        (out * torch.linspace(0, 1, 50)).sum().backward()
        results.append((out.detach(), h.grad, decoder.weight.grad.clone(), decoder.bias.grad.clone()))
    for fast, slow in zip(*results):
        assert torch.allclose(fast, slow, atol=1e-5)
    assert results[0][1][1, 4:].abs().sum() == 0  # padding gets no gradient
    with torch.inference_mode():  # the inference path (amax, no argmax) gives the same weights
        assert torch.allclose(head(hidden, mask, decoder), results[0][0], atol=1e-5)
