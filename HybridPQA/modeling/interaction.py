"""I3's implicit interaction (Dong et al., CIKM 2023), on the document side only.

A query reconstructor, one BERT layer over SLOTS [MASK] slots that self-attend and cross-attend
to the document's CLS vector p0, produces a pseudo-query G; an interactor, one BERT layer over
the two tokens [p0 ; mean(G)], gives the document vector p (its first output). Everything depends
on the document alone, so documents are encoded and indexed ahead as usual and a query costs what
it costs a plain dual encoder.

Ours beyond the paper: with I3.SPARSE the interactor also conditions the SPLADE expansion, whose
token states become h_t + W (p - p0) before the MLM head (W starts at zero: the plain expansion).

In training, a separate MLM head over G predicts a pseudo-query's tokens, one per slot
(`objectives.reconstruction`).
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.models.bert.modeling_bert import BertLayer


def _layer(config, cross_attention: bool, init: nn.Module | None) -> BertLayer:
    config = copy.deepcopy(config)
    config.is_decoder = config.add_cross_attention = cross_attention  # BERT's cross-attention comes with is_decoder
    layer = BertLayer(config)
    layer.attention.self.is_causal = False  # the slots see each other both ways
    if init is not None:  # start from the backbone's last layer (the cross-attention stays random)
        layer.load_state_dict(init.state_dict(), strict=False)
    return layer


class ImplicitInteraction(nn.Module):
    """(B, L, H) document hidden states -> {"pooled": (B, H) p, "shift": (B, H) p - p0 for the sparse
    head or None, "pseudo_query": (B, S, V) slot logits (training with targets only) or None}."""

    def __init__(self, mlm: nn.Module, slots: int, condition_sparse: bool, reconstruct: bool, mask_token_id: int):
        super().__init__()
        config, last = mlm.config, mlm.base_model.encoder.layer[-1]
        self.reconstructor = _layer(config, True, last)
        self.interactor = _layer(config, False, last)
        with torch.no_grad():  # [MASK] + the position embeddings of 0..S-1, through BERT's embedding LayerNorm
            ids = torch.full((1, slots), mask_token_id, dtype=torch.long)
            start = mlm.base_model.embeddings(input_ids=ids)[0]
        self.slots = nn.Parameter(start.detach().clone())
        self.condition = None
        if condition_sparse:
            self.condition = nn.Linear(config.hidden_size, config.hidden_size)
            nn.init.zeros_(self.condition.weight)
            nn.init.zeros_(self.condition.bias)
        self.generator = copy.deepcopy(mlm.cls) if reconstruct else None  # its own MLM head, from the backbone's

    def forward(self, hidden: torch.Tensor) -> dict[str, torch.Tensor | None]:
        p0 = hidden[:, :1]
        slots = self.slots.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
        pseudo = self.reconstructor(slots, encoder_hidden_states=p0)
        pooled = self.interactor(torch.cat([p0, pseudo.mean(1, keepdim=True)], dim=1))[:, 0]
        shift = self.condition(pooled - p0[:, 0]) if self.condition is not None else None
        logits = self.generator(pseudo) if self.generator is not None and self.training else None
        return {"pooled": pooled, "shift": shift, "pseudo_query": logits}
