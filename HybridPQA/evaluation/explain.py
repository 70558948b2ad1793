"""RETRIEVER.VISUALIZE: why the sparse head scored a document as it did, for a sample of queries.

For each sampled query: its top expansion terms, the top-ranked document's top terms, and the
matching terms' contributions q_v * d_v to the sparse score (which sum to that score).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData
from HybridPQA.evaluation.encode import encode


def top_terms(vector, tokenizer, k: int) -> list[tuple[str, float]]:
    """(1, V) csr row -> its k largest (term, weight) pairs."""
    order = np.argsort(-vector.data)[:k]
    return [(tokenizer.convert_ids_to_tokens(int(vector.indices[i])), float(vector.data[i])) for i in order]


def contributions(query, doc, tokenizer) -> list[tuple[str, float]]:
    """Matching terms of two (1, V) csr rows and q_v * d_v, largest first."""
    product = query.multiply(doc).tocsr()
    return top_terms(product, tokenizer, product.nnz)


def write_term_report(model, tokenizer, data: RankingData, cfg: CfgNode, device: torch.device, path: Path,
                      num_queries: int = 5, k: int = 15) -> None:
    if "sparse" not in model.heads:
        path.write_text("VISUALIZE: this model has no sparse head, so there are no terms to show.\n")
        return
    m = cfg.RETRIEVER.MODEL
    qids = data.judged_qids()[:num_queries]
    docids = [data.candidates[q] if data.candidates is not None else data.positives(q) for q in qids]
    q_reps = encode(model, tokenizer, "query", [data.queries[q] for q in qids], m.QUESTION_MAX_LENGTH, 8, device)
    lines = []
    for i, qid in enumerate(qids):
        d_reps = encode(model, tokenizer, "context", [data.docs[d] for d in docids[i]], m.CONTEXT_MAX_LENGTH, 16, device)
        q_vec = q_reps["sparse"][i]
        scores = np.asarray(d_reps["sparse"].multiply(q_vec).sum(1)).ravel()
        best = int(np.argmax(scores))
        d_vec = d_reps["sparse"][best]
        relevant = "relevant" if data.qrels[qid].get(docids[i][best], 0) > 0 else "not relevant"
        lines += [f"query {qid}: {data.queries[qid]}",
                  "  query terms: " + ", ".join(f"{t} {w:.2f}" for t, w in top_terms(q_vec, tokenizer, k)),
                  f"  top sparse hit {docids[i][best]} ({relevant}, score {scores[best]:.2f}): "
                  f"{data.docs[docids[i][best]][:200]}",
                  "  document terms: " + ", ".join(f"{t} {w:.2f}" for t, w in top_terms(d_vec, tokenizer, k)),
                  "  matching terms q*d: " + ", ".join(f"{t} {w:.2f}" for t, w in contributions(q_vec, d_vec, tokenizer)),
                  ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
