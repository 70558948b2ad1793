"""A masked-LM backbone run once per text, feeding the dense and the sparse head."""
from __future__ import annotations

import torch
from torch import nn

from HybridPQA.modeling.heads import DenseHead, SpladeHead


class HybridEncoder(nn.Module):
    """input_ids, attention_mask (B, L) -> {"dense": (B, D), "sparse": (B, V)}, each head optional.

    The MLM head is only run when the sparse head needs its logits. Backbones whose MLM head is
    a known module (`cls` in BERT, `lm_head` in RoBERTa) run body and head separately; any other
    masked LM runs whole, with hidden states.
    """

    def __init__(self, mlm: nn.Module, dense_head: DenseHead | None, sparse_head: SpladeHead | None):
        super().__init__()
        self.mlm, self.dense_head, self.sparse_head = mlm, dense_head, sparse_head
        self.lm_head = next((getattr(mlm, n) for n in ("cls", "lm_head") if hasattr(mlm, n)), None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.lm_head is not None:
            hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            logits = self.lm_head(hidden) if self.sparse_head is not None else None
        else:
            out = self.mlm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            hidden, logits = out.hidden_states[-1], out.logits
        reps = {}
        if self.dense_head is not None:
            reps["dense"] = self.dense_head(hidden, attention_mask)
        if self.sparse_head is not None:
            reps["sparse"] = self.sparse_head(logits, attention_mask)
        return reps


class BiEncoder(nn.Module):
    """A query encoder and a context encoder; `shared=True` uses one for both (siamese)."""

    def __init__(self, query_encoder: HybridEncoder, context_encoder: HybridEncoder | None = None):
        super().__init__()
        self.query_encoder = query_encoder
        self.context_encoder = context_encoder  # None = shared with the query encoder

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(h for h in ("dense", "sparse") if getattr(self.query_encoder, f"{h}_head") is not None)

    def encode(self, side: str, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        encoder = self.context_encoder if side == "context" and self.context_encoder is not None else self.query_encoder
        return encoder(input_ids, attention_mask)
