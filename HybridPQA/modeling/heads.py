"""The two heads over one backbone pass. Similarity, fusion and loss stay out of here."""
from __future__ import annotations

import torch
from torch import nn

from HybridPQA.modeling.splade_kernel import MaxPooledProjection, max_projection


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
        return self.project(pooled)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B, D): the projection, when there is one (I3 pools with its interactor)."""
        return self.projection(pooled) if self.projection is not None else pooled


class LateHead(nn.Module):
    """(B, L, H) hidden states, (B, L) mask -> (B, L, D) unit token vectors, padding rows zero
    (ColBERT). A zero row marks padding for `maxsim`."""

    def __init__(self, hidden_size: int, dim: int | None = None):
        super().__init__()
        self.projection = nn.Linear(hidden_size, dim or hidden_size, bias=False)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        vectors = nn.functional.normalize(self.projection(hidden), dim=-1)
        return vectors * attention_mask.unsqueeze(-1).to(vectors.dtype)


# terms per projection tile inside a corpus (context) ONNX graph: 256 encoded corpora fastest in ONNX
# Runtime, fp32 and int8, against 64, 128, 1,024, 4,096 and the whole vocabulary at once. A query graph
# projects the whole vocabulary at once: one short text's (1, L, V) logits are small, and one matmul
# answered sooner than 120 small ones (scripts/bench_encode_backends.py)
ONNX_VOCAB_TILE = 256


class SpladeHead(nn.Module):
    """(B, L, H) pre-decoder states + the MLM decoder, or (B, L, V) logits; (B, L) mask -> (B, V) weights.

    w_v = agg_t log(1 + ReLU(logit_tv)) over real (non-padding) tokens, zero on masked terms,
    then only the `top_k` largest kept. For max the max is taken before the activation, which
    is exact because log1p(relu(.)) is monotone; given the decoder, it runs MaxPooledProjection.
    """

    def __init__(self, vocab_mask: torch.Tensor, agg: str = "max", top_k: int | None = None, chunk: int = 1024):
        super().__init__()
        self.register_buffer("vocab_mask", vocab_mask.bool(), persistent=False)
        self.agg, self.top_k, self.chunk = agg, top_k, chunk
        self.onnx_tile: int | None = ONNX_VOCAB_TILE  # terms per projection tile in an exported graph (None: all)

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor, decoder: nn.Linear | None = None):
        pad = ~attention_mask.bool()
        if self.agg == "max" and decoder is not None and torch.onnx.is_in_onnx_export():
            # in a graph: padding takes the text's first real token's state, so the max needs no mask, and
            # the bias comes after it; the vocabulary in tiles of `onnx_tile` terms (a static unroll: the
            # vocabulary is fixed), so the runtime reuses one (B, L, tile) buffer, never the (B, L, V) logits
            first = torch.gather(states, 1, (~pad).long().argmax(1)[:, None, None].expand(-1, 1, states.shape[-1]))
            states, weight = torch.where(pad.unsqueeze(-1), first, states), decoder.weight
            tile = self.onnx_tile or weight.shape[0]
            pooled = torch.cat([torch.matmul(states, weight[t:t + tile].t()).amax(dim=1)
                                for t in range(0, weight.shape[0], tile)], dim=-1)
            weights = torch.log1p(torch.relu(pooled + decoder.bias if decoder.bias is not None else pooled))
        elif self.agg == "max" and decoder is not None:
            bias = decoder.bias if decoder.bias is not None else torch.zeros(decoder.out_features, device=states.device)
            if torch.is_grad_enabled():
                pooled = MaxPooledProjection.apply(states, decoder.weight, bias, pad, self.chunk)
            else:
                pooled = max_projection(states, decoder.weight, bias, pad, self.chunk)[0]
            weights = torch.log1p(torch.relu(pooled))
        else:
            logits = decoder(states) if decoder is not None else states
            if self.agg == "max":
                weights = torch.log1p(torch.relu(logits.masked_fill(pad.unsqueeze(-1), float("-inf")).max(dim=1).values))
            else:
                weights = torch.log1p(torch.relu(logits)).masked_fill(pad.unsqueeze(-1), 0.0).sum(dim=1)
        weights = weights * self.vocab_mask.to(weights.dtype)
        if self.top_k is not None and self.top_k < weights.shape[-1]:
            values, index = weights.topk(self.top_k, dim=-1)
            weights = torch.zeros_like(weights).scatter(-1, index, values)
        return weights
