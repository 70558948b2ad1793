"""Inference-free queries (MODEL.QUERY_ENCODER static): no transformer runs on a query.

The sparse vector is one trainable weight per vocabulary term that the query contains, started
from the term's IDF over the training contexts (SPLADE-doc; sentence-transformers'
SparseStaticEmbedding); the dense vector is the mean of the query tokens' trainable embeddings,
started from the backbone's word embeddings (LightRetriever), or the CLS of a small transformer
(STATIC_DENSE transformer). The documents keep the full hybrid encoder.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from HybridPQA.heads import DENSE, SPARSE

log = logging.getLogger(__name__)


class StaticSparseHead(nn.Module):
    """input_ids, attention_mask (B, L) -> (B, V): relu(w_v) for each allowed term v in the query, else 0."""

    def __init__(self, vocab_mask: torch.Tensor):
        super().__init__()
        self.register_buffer("vocab_mask", vocab_mask.bool(), persistent=False)
        self.weight = nn.Parameter(torch.ones(len(vocab_mask)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        present = torch.zeros(input_ids.shape[0], len(self.weight), device=input_ids.device)
        present.scatter_(1, input_ids, attention_mask.to(present.dtype))  # padding ids are masked terms
        return present * torch.relu(self.weight) * self.vocab_mask.to(present.dtype)

    @torch.no_grad()
    def init_idf(self, token_ids: list[list[int]]) -> None:
        """w_v = log(1 + (N - df_v + 0.5) / (df_v + 0.5)) over N tokenized contexts (BM25's IDF)."""
        df = np.zeros(len(self.weight))
        for ids in token_ids:
            df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        n = len(token_ids)
        self.weight.copy_(torch.from_numpy(np.log1p((n - df + 0.5) / (df + 0.5))).float())
        log.info("static query weights: IDF of %d contexts (%.2f for an unseen term)", n, math.log1p((n + 0.5) / 0.5))


class StaticDenseHead(nn.Module):
    """input_ids, attention_mask (B, L) -> (B, H): the mean of the non-special tokens' embeddings."""

    def __init__(self, embeddings: torch.Tensor, special: torch.Tensor):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(embeddings.detach().clone().float(), freeze=False)
        self.register_buffer("special", special.bool(), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = (attention_mask.bool() & ~self.special[input_ids]).unsqueeze(-1).float()
        return (self.embedding(input_ids) * keep).sum(1) / keep.sum(1).clamp(min=1)


class StaticQueryEncoder(nn.Module):
    """input_ids, attention_mask (B, L) -> {"sparse": (B, V), "dense": (B, H)}, each head optional.
    `dense_head` is a StaticDenseHead or a dense-only HybridEncoder (STATIC_DENSE transformer)."""

    def __init__(self, sparse_head: StaticSparseHead, dense_head: nn.Module | None):
        super().__init__()
        self.sparse_head, self.dense_head = sparse_head, dense_head

    @property
    def mlm(self) -> nn.Module | None:
        """The transformer a STATIC_DENSE transformer query side runs (saved as query/), else None."""
        return getattr(self.dense_head, "mlm", None)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(h for h, module in ((DENSE, self.dense_head), (SPARSE, self.sparse_head)) if module is not None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                heads: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        wanted, reps = set(self.heads if heads is None else heads), {}
        if DENSE in wanted and self.dense_head is not None:
            dense = self.dense_head(input_ids, attention_mask)
            reps[DENSE] = dense[DENSE] if isinstance(dense, dict) else dense
        if SPARSE in wanted and self.sparse_head is not None:
            reps[SPARSE] = self.sparse_head(input_ids, attention_mask)
        return reps


def init_static_queries(model: nn.Module, tokenizer, texts: list[str], max_length: int) -> None:
    """Start a static query encoder's term weights from the IDF of `texts` (the training contexts)."""
    head = getattr(model.query_encoder, "sparse_head", None)
    if isinstance(head, StaticSparseHead):
        head.init_idf(tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"])
