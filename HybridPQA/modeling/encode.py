"""Texts in, stored representations out: the one encoder that training's validation, evaluation,
the Python API, `index`, `search` and `explain` all use.

`encode` runs a bi-encoder side over texts in length-sorted batches (little padding is computed)
and keeps each head's vectors as the head table says (heads.HEADS: dense a float32 tensor, sparse a
CSR matrix, late float16 token vectors); with cosine similarity every head's vectors are made unit
length on the device, by the same `Head.unit` that training's similarity uses.

`Encoder` binds a model to everything encoding needs (tokenizer, encoding settings, device,
precision, batch sizes, the text options its data was trained with), so callers pass texts only.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from HybridPQA.heads import HEADS, SPARSE, of
from HybridPQA.modeling.encoder import BiEncoder
from HybridPQA.modeling.encoding import EncodingSettings
from HybridPQA.precision import autocast
from HybridPQA.runtime import progress

log = logging.getLogger(__name__)
Reps = dict[str, object]  # {head: stored vectors}, as heads.HEADS keeps them


def tokenize(tokenizer, texts: list[str], max_length: int, device: torch.device | str = "cpu") -> dict:
    """Dynamic padding to the longest text of the batch, truncation at max_length."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                      return_token_type_ids=False)
    return {k: v.to(device) for k, v in batch.items()}


def batched(tokenizer, side: str, texts: list[str], max_length: int, batch_size: int, forward,
            tally: list[int] | None = None) -> Reps:
    """The one batching loop of every encoder: `texts` tokenised once, run in length-sorted batches
    through `forward(input_ids, attention_mask) -> {head: (B, ...) tensor}` and kept as the head
    table says, rows in input order. `tally` [texts cut, texts]: counts added to it."""
    ids = tokenizer(texts, truncation=True, max_length=max_length, return_token_type_ids=False)["input_ids"]
    lengths = [len(x) for x in ids]
    at_limit = sum(n >= max_length for n in lengths)
    if tally is not None:
        tally[0], tally[1] = tally[0] + at_limit, tally[1] + len(texts)
    if at_limit and len(texts) > 1:  # said once per call, never per text
        log.info("%d of %d %s texts reach the %d-token limit and are cut there (RETRIEVER.MODEL.%s_MAX_LENGTH)",
                 at_limit, len(texts), side, max_length, "QUESTION" if side == "query" else "CONTEXT")
    order = np.argsort(lengths, kind="stable")
    parts: dict[str, list] = {}
    bar = progress(total=len(texts), desc=f"encode {side}s", unit="text", enabled=len(texts) > batch_size)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
        for head, vectors in of(forward(batch["input_ids"], batch["attention_mask"])).items():
            parts.setdefault(head, []).append(HEADS[head].store(vectors))
        bar.update(len(chunk))
    bar.close()
    inverse = np.argsort(order)
    return {head: HEADS[head].concat(stored, inverse) for head, stored in parts.items()}


def torch_forward(model: BiEncoder, side: str, device: torch.device, dtype: torch.dtype | None = None,
                  cosine: bool = False, heads: tuple[str, ...] | None = None):
    """A PyTorch bi-encoder side as `batched`'s forward: on `device` in `dtype`, unit length with `cosine`."""
    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Reps:
        with autocast(device, dtype):
            reps = model.encode(side, input_ids.to(device), attention_mask.to(device), heads)
        return {head: HEADS[head].unit(v) if cosine else v for head, v in of(reps).items()}
    return forward


@torch.inference_mode()
def encode(model: BiEncoder, tokenizer, side: str, texts: list[str], max_length: int, batch_size: int,
           device: torch.device, dtype: torch.dtype | None = None, cosine: bool = False,
           heads: tuple[str, ...] | None = None, tally: list[int] | None = None) -> Reps:
    """Encode `texts` with the query or context encoder -> {head: stored vectors}, rows in input
    order; unit length with `cosine`; only `heads` (default: all the model has) are computed."""
    model.eval()
    return batched(tokenizer, side, list(texts), max_length, batch_size,
                   torch_forward(model, side, device, dtype, cosine, heads), tally)


def pair_scores(queries: Reps, docs: Reps, q_index: np.ndarray, d_index: np.ndarray) -> dict[str, np.ndarray]:
    """{head: (P,)} scores of the pairs (queries[q_index[p]], docs[d_index[p]])."""
    return {h: HEADS[h].pairs(q, docs[h], q_index, d_index) for h, q in of(queries).items()}


def active_dims(reps: Reps) -> float | None:
    """Mean number of non-zero terms per sparse vector."""
    return float(np.diff(reps[SPARSE].indptr).mean()) if SPARSE in reps else None


class Encoder:
    """A model ready to encode texts: `encode("query" | "context", texts)` -> {head: stored vectors}.

    `batch_sizes`: texts per batch for (queries, contexts); `text`: the data's text options
    (data.text.TextOptions: .query(text), .context(text, source)), applied to raw texts by
    `encode_raw`; texts read by data.build_split already have them. `truncated[side]`: [texts cut at
    the side's max length, texts encoded] so far, for summaries."""

    def __init__(self, model: BiEncoder, tokenizer, encoding: EncodingSettings, device: torch.device,
                 dtype: torch.dtype | None = None, batch_sizes: tuple[int, int] = (64, 64), text=None):
        self.model, self.tokenizer, self.encoding = model, tokenizer, encoding
        self.device, self.dtype, self.batch_sizes, self.text = device, dtype, batch_sizes, text
        self.truncated = {"query": [0, 0], "context": [0, 0]}

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.model.heads)

    def forward(self, side: str, heads: tuple[str, ...] | None = None):
        """The model as `batched`'s forward pass: (input_ids, attention_mask) -> {head: vectors}; the one
        thing another backend (modeling.onnx_runtime) changes."""
        self.model.eval()
        return torch_forward(self.model, side, self.device, self.dtype, self.encoding.cosine, heads)

    @torch.inference_mode()
    def encode(self, side: str, texts: list[str], batch_size: int | None = None,
               heads: tuple[str, ...] | None = None) -> Reps:
        return batched(self.tokenizer, side, list(texts), self.encoding.max_length(side),
                       batch_size or self.batch_sizes[side == "context"], self.forward(side, heads),
                       self.truncated.setdefault(side, [0, 0]))

    def encode_raw(self, side: str, texts: list[str], sources: list[str | None] | None = None) -> Reps:
        """Texts as a user gives them: the text options applied first, as data.build_split applies them."""
        if self.text is not None:
            texts = self.text.texts(side, texts, sources)
        return self.encode(side, texts)

    def terms(self) -> list[str]:
        """The sparse vectors' column names (the tokenizer's vocabulary)."""
        return self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
