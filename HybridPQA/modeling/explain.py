"""Why a hybrid model scored a document as it did, computed (rendering is HybridPQA.presentation): for
one (query, document) pair the top expansion terms of each side with their weights, every matching
term's contribution q_v * d_v to the sparse score (they sum to it), and the dense and sparse shares
of the hybrid score (`Fusion.parts`). `matched_terms` is the one definition of what a query and a
document match on, used by explain, RETRIEVER.VISUALIZE and the service.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, HEADS, HYBRID, SPARSE
from HybridPQA.modeling.encode import Encoder
from HybridPQA.scoring import Fusion


@dataclass
class Explanation:
    query: str
    document: str
    query_terms: list[tuple[str, float]] = field(default_factory=list)  # top expansion terms, largest first
    document_terms: list[tuple[str, float]] = field(default_factory=list)
    matches: list[tuple[str, float, float, float]] = field(default_factory=list)  # term, q_v, d_v, q_v * d_v
    scores: dict[str, float] = field(default_factory=dict)  # dense, sparse; hybrid = dense_part + sparse_part
    fusion: str = ""
    note: str = ""  # how the hybrid was fused, where that is not over every document of the query
    title: str = ""
    rank: tuple[int, int] | None = None  # (this document's rank, documents ranked), with a question
    best_relevant: tuple[str, int, dict] | None = None  # (docid, rank, scores) of the best-ranked relevant document

    def shares(self) -> dict[str, float]:
        """The dense and sparse parts of the hybrid score (Fusion.parts), as fractions of their magnitudes."""
        parts = {h: abs(self.scores[f"{h}_part"]) for h in (DENSE, SPARSE) if f"{h}_part" in self.scores}
        total = sum(parts.values()) or 1.0
        return {h: v / total for h, v in parts.items()}


def _terms(row, tokenizer, k: int | None) -> list[tuple[str, float]]:
    order = np.argsort(-row.data, kind="stable")[:k]
    return [(tokenizer.convert_ids_to_tokens(int(row.indices[i])), float(row.data[i])) for i in order]


def explain_pair(encoder: Encoder, query: str, document: str, fusion: Fusion, top: int = 15, title: str = "",
                 context: tuple[np.ndarray, np.ndarray, int] | None = None) -> Explanation:
    """Terms, matches and scores of one (query, document) pair. `context` = (dense (n,), sparse (n,),
    column): the scores of every document of the query and this one's column, which a normalisation
    or RRF fuses over; without it the pair is fused alone (exact for linear fusion without norm)."""
    if encoder.model is None:
        raise InputError("explain needs the PyTorch model; load the checkpoint, not its ONNX export")
    if not hasattr(encoder.model, "query_encoder") or not {DENSE, SPARSE} & set(encoder.heads):
        raise InputError("explain shows the terms and scores of dense / sparse heads; this model has neither "
                         "(BM25, cross-encoder or late interaction)")
    tokenizer = encoder.tokenizer
    q, d = (encoder.encode(side, [text], 1) for side, text in (("query", query), ("context", document)))
    out = Explanation(query, document, fusion=fusion.describe(), title=title)
    if SPARSE in q:
        out.query_terms, out.document_terms = _terms(q[SPARSE], tokenizer, top), _terms(d[SPARSE], tokenizer, top)
        matched = matched_terms(q[SPARSE][0], d[SPARSE][0])
        out.matches = [(tokenizer.convert_ids_to_tokens(t), qw, dw, p) for t, qw, dw, p in matched]
        out.scores[SPARSE] = float(sum(p for *_, p in matched))
    if DENSE in q:
        out.scores[DENSE] = float(HEADS[DENSE].matrix(q[DENSE], d[DENSE])[0, 0])
    if {DENSE, SPARSE} <= set(out.scores):
        used = fusion
        if context is None:
            context = (np.array([out.scores[DENSE]]), np.array([out.scores[SPARSE]]), 0)
            if fusion.method == "rrf" or fusion.norm != "none":
                used = Fusion(alpha=fusion.alpha)
                out.note = (f"{fusion.describe()} fuses over the query's other documents too; shown for this pair "
                            f"alone: {used.describe()}")
        dense, sparse, column = context
        parts = used.parts(np.asarray(dense, np.float32)[None], np.asarray(sparse, np.float32)[None])
        out.scores["dense_part"], out.scores["sparse_part"] = (float(p[0, column]) for p in parts)
        out.scores[HYBRID] = out.scores["dense_part"] + out.scores["sparse_part"]
    return out


class CsrRow(NamedTuple):
    """One sparse vector as a CSR row's two arrays (term ids, weights)."""
    indices: np.ndarray
    data: np.ndarray


def matched_terms(query_row, document_row) -> list[tuple[int, float, float, float]]:
    """The terms one sparse query vector and one sparse document vector (1 x V CSR rows) share:
    (term id, q_v, d_v, q_v * d_v), largest product first; the products sum to the sparse score."""
    terms, at_q, at_d = np.intersect1d(query_row.indices, document_row.indices, assume_unique=True, return_indices=True)
    q, d = query_row.data[at_q].astype(np.float64), document_row.data[at_d].astype(np.float64)
    products = q * d
    keep = np.flatnonzero(products != 0)
    order = keep[np.lexsort((terms[keep], -products[keep]))]
    return list(zip(terms[order].tolist(), q[order].tolist(), d[order].tolist(), products[order].tolist()))
