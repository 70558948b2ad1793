"""A masked-LM backbone run once per text, feeding the dense and the sparse head."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from HybridPQA.heads import DENSE, HEADS, LATE, SPARSE
from HybridPQA.modeling.heads import DenseHead, LateHead, SpladeHead
from HybridPQA.modeling.interaction import ImplicitInteraction


class SideEncoder(Protocol):
    """What a bi-encoder side is: token ids in, {head: vectors} out, for the heads it has (`heads`,
    names of heads.HEADS), or only those asked for. HybridEncoder and StaticQueryEncoder are two."""

    heads: tuple[str, ...]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 heads: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]: ...


class HybridEncoder(nn.Module):
    """input_ids, attention_mask (B, L) -> {"dense": (B, D), "sparse": (B, V), "late": (B, L, D)},
    each head optional ("late": token vectors for late interaction). A SideEncoder.

    The MLM head runs only when the sparse head needs it. BERT-family heads (`cls.predictions`:
    transform + decoder) hand the decoder to the sparse head, which pools without building the
    (B, L, V) logits; RoBERTa-style `lm_head`s produce logits; any other masked LM runs whole,
    with hidden states.
    """

    def __init__(self, mlm: nn.Module, dense_head: DenseHead | None, sparse_head: SpladeHead | None,
                 late_head: LateHead | None = None, interaction: ImplicitInteraction | None = None):
        super().__init__()
        self.mlm, self.dense_head, self.sparse_head, self.late_head = mlm, dense_head, sparse_head, late_head
        self.interaction = interaction  # I3, on the context side: the dense vector and the sparse head's input
        predictions = getattr(getattr(mlm, "cls", None), "predictions", None)
        self.split_head = predictions is not None and hasattr(predictions, "transform") and hasattr(predictions, "decoder")

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(h for h, module in ((DENSE, self.dense_head), (SPARSE, self.sparse_head), (LATE, self.late_head))
                     if module is not None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                heads: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """`heads`: compute only these (default: all); a dense-only call never runs the MLM head."""
        wanted = set(self.heads if heads is None else heads)
        dense_head = self.dense_head if DENSE in wanted else None
        sparse_head = self.sparse_head if SPARSE in wanted else None
        late_head = self.late_head if LATE in wanted else None
        reps, sparse, implicit = {}, None, {}
        if self.split_head or hasattr(self.mlm, "lm_head"):
            hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            implicit = self.interaction(hidden) if self.interaction is not None else {}
            if sparse_head is not None and self.split_head:
                predictions = self.mlm.cls.predictions
                states = hidden if implicit.get("shift") is None else hidden + implicit["shift"][:, None]
                sparse = sparse_head(predictions.transform(states), attention_mask, predictions.decoder)
            elif sparse_head is not None:
                sparse = sparse_head(self.mlm.lm_head(hidden), attention_mask)
        else:
            out = self.mlm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            hidden = out.hidden_states[-1]
            sparse = sparse_head(out.logits, attention_mask) if sparse_head is not None else None
        if dense_head is not None:
            reps[DENSE] = (dense_head(hidden, attention_mask) if self.interaction is None
                             else dense_head.project(implicit["pooled"]))
        if self.interaction is not None and implicit["pseudo_query"] is not None:
            reps["pseudo_query"] = implicit["pseudo_query"]
        if sparse is not None:
            reps[SPARSE] = sparse
        if late_head is not None:
            reps[LATE] = late_head(hidden, attention_mask)
        return reps


class BiEncoder(nn.Module):
    """A query encoder and a context encoder (None: the query encoder is shared, siamese).

    `markers` = {"query": id, "context": id} inserts that token after [CLS] (ColBERT's [Q]/[D]).
    """

    def __init__(self, query_encoder: SideEncoder, context_encoder: SideEncoder | None = None,
                 markers: dict[str, int] | None = None):
        super().__init__()
        self.query_encoder = query_encoder
        self.context_encoder = context_encoder  # None = shared with the query encoder
        self.markers = markers

    @property
    def document_encoder(self) -> nn.Module:
        return self.context_encoder if self.context_encoder is not None else self.query_encoder

    @property
    def heads(self) -> tuple[str, ...]:
        """The document side's heads, in the head table's order."""
        return tuple(h for h in HEADS if h in self.document_encoder.heads)

    @property
    def backbone_config(self):
        return self.document_encoder.mlm.config

    def forward(self, query: dict[str, torch.Tensor], context: dict[str, torch.Tensor]) -> tuple[dict, dict]:
        """Both sides in one call (tokenizer outputs in, representations out), so DDP sees one forward."""
        return self.encode("query", **query), self.encode("context", **context)

    def encode(self, side: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               heads: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        encoder = self.context_encoder if side == "context" and self.context_encoder is not None else self.query_encoder
        if self.markers is not None:
            marker = torch.full_like(input_ids[:, :1], self.markers[side])
            input_ids = torch.cat([input_ids[:, :1], marker, input_ids[:, 1:]], dim=1)
            attention_mask = torch.cat([attention_mask[:, :1], attention_mask], dim=1)
        return encoder(input_ids, attention_mask, heads)
