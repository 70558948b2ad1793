"""The two heads over one backbone pass. Similarity, fusion and loss stay out of here."""
from __future__ import annotations

import torch
from torch import nn


class DenseHead(nn.Module):
    """(B, L, H) hidden states, (B, L) mask -> (B, D): CLS or masked-mean pooling, optional projection."""

    def __init__(self, hidden_size: int, pooling: str = "cls", projection_dim: int | None = None):
        super().__init__()
        self.pooling = pooling
        self.projection = nn.Linear(hidden_size, projection_dim) if projection_dim else None

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.projection(pooled) if self.projection is not None else pooled


class SpladeHead(nn.Module):
    """(B, L, V) MLM logits, (B, L) mask -> (B, V) term weights.

    w_v = agg_t log(1 + ReLU(logit_tv)) over real (non-padding) tokens, zero on masked terms,
    then only the `top_k` largest kept. For max, the max is taken before the activation:
    exact, since log1p(relu(.)) is monotone, and it never materialises a second (B, L, V)
    tensor; torch.max saves only the argmax indices for the backward pass.
    """

    def __init__(self, vocab_mask: torch.Tensor, agg: str = "max", top_k: int | None = None):
        super().__init__()
        self.register_buffer("vocab_mask", vocab_mask.bool(), persistent=False)
        self.agg, self.top_k = agg, top_k

    def forward(self, logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pad = ~attention_mask.bool().unsqueeze(-1)
        if self.agg == "max":
            weights = torch.log1p(torch.relu(logits.masked_fill(pad, float("-inf")).max(dim=1).values))
        else:
            weights = torch.log1p(torch.relu(logits)).masked_fill(pad, 0.0).sum(dim=1)
        weights = weights * self.vocab_mask.to(weights.dtype)
        if self.top_k is not None and self.top_k < weights.shape[-1]:
            values, index = weights.topk(self.top_k, dim=-1)
            weights = torch.zeros_like(weights).scatter(-1, index, values)
        return weights
