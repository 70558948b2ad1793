"""What the service returns for a query: each hit with its text, its hybrid score split into the dense
and sparse parts (`Fusion.parts`, over the documents the search normalised with), and the terms it
matched: the query-document term products, each marked as in the document's own text or an
expansion the model added."""
from __future__ import annotations

import html

import numpy as np

from HybridPQA.api import SearchIndex
from HybridPQA.evaluation.explain import highlighted
from HybridPQA.heads import DENSE, HYBRID, SPARSE

TERMS_SHOWN = 12
TEXT_SHOWN = 1500  # characters of a hit's text returned


def describe_hits(index: SearchIndex, queries: list[str], k: int, scorer: str, detail: bool = True) -> list[list[dict]]:
    """For each query its top `k` hits: {id, score, text} and, with `detail`, dense, sparse (raw head
    scores), dense_part, sparse_part (hybrid only), terms: [{term, weight, expansion}] and html (the
    text, matches shaded). One encoding of the queries serves the search and the split."""
    retriever, corpus = index.retriever, index.corpus
    encoded = retriever.encode_queries(queries)
    qids = [str(i) for i in range(len(queries))]
    runs = corpus.search(encoded.reps, qids, retriever.fusion, k, (scorer,))
    row_of = index.rows()
    out = []
    for i, qid in enumerate(qids):
        ranked = list(runs[scorer][qid].items())
        rows = np.array([[row_of[d] for d, _ in ranked]], dtype=np.int64)
        if not detail:
            out.append([{"id": d, "score": float(v), "text": (index.texts or {}).get(d, "")[:TEXT_SHOWN]}
                        for d, v in ranked])
            continue
        q = {h: v[i:i + 1] for h, v in encoded.reps.items()}
        raw = corpus.exact_scores(q, rows) if rows.size else {}
        parts = _parts(corpus, q, rows, retriever.fusion) if scorer == HYBRID and rows.size else None
        query_terms = _row_terms(encoded.sparse, i) if encoded.sparse is not None else {}
        hits = []
        for j, (docid, score) in enumerate(ranked):
            text = (index.texts or {}).get(docid, "")[:TEXT_SHOWN]
            hit = {"id": docid, "score": float(score), "text": text,
                   **{h: float(raw[h][0, j]) for h in (DENSE, SPARSE) if h in raw}}
            if parts is not None:
                hit["dense_part"], hit["sparse_part"] = float(parts[0][0, j]), float(parts[1][0, j])
            hits.append(hit)
        if query_terms and hits:
            _add_terms(index, hits, rows[0], query_terms)
        out.append(hits)
    return out


def _parts(corpus, q: dict, rows: np.ndarray, fusion) -> tuple[np.ndarray, np.ndarray]:
    """The dense and sparse parts of the hits' hybrid scores, over the documents the search fused with:
    every document (the exact hybrid), else the hits and the fixed sample (z-score: the sample's
    statistics; min-max: the sample's and the hits'; RRF: ranks among the hits)."""
    statistics = corpus.statistics_rows(fusion)
    if statistics is None:
        scores = corpus.scores(q)
        dense, sparse = fusion.parts(scores[DENSE], scores[SPARSE])
        return dense[:, rows[0]], sparse[:, rows[0]]
    both = np.concatenate([rows, statistics[None]], axis=1)
    scores = corpus.exact_scores(q, both)
    columns = np.concatenate([np.full(rows.shape, fusion.method == "rrf" or fusion.norm == "min-max"),
                              np.ones((1, statistics.size), bool)], axis=1)
    import torch

    dense, sparse = fusion.parts(torch.from_numpy(scores[DENSE]), torch.from_numpy(scores[SPARSE]),
                                 torch.from_numpy(columns))
    return dense[:, :rows.shape[1]].numpy(), sparse[:, :rows.shape[1]].numpy()


def _row_terms(matrix, i: int) -> dict[int, float]:
    row = matrix[i]
    return dict(zip(row.indices.tolist(), row.data.tolist()))


def _add_terms(index: SearchIndex, hits: list[dict], rows: np.ndarray, query_terms: dict[int, float]) -> None:
    """Each hit's matching terms (largest query x document product first) and its highlighted text."""
    docs, _ = index.corpus.doc_vectors(rows)
    tokenizer, terms = index.retriever.encoder.tokenizer, index.retriever.terms
    texts = [hit["text"] or " " for hit in hits]  # one tokenizer call for every hit's text
    encodings = tokenizer(texts, return_offsets_mapping=True, add_special_tokens=False, truncation=False)
    for j, hit in enumerate(hits):
        row = docs[j]
        products = sorted(((query_terms[t] * w, t, w) for t, w in zip(row.indices.tolist(), row.data.tolist())
                           if t in query_terms), reverse=True)
        encoded = {key: encodings[key][j] for key in ("input_ids", "offset_mapping")}
        own = set(encoded["input_ids"])
        hit["terms"] = [{"term": terms[t], "weight": round(p, 5), "expansion": t not in own}
                        for p, t, _ in products[:TERMS_SHOWN]]
        matches = [(terms[t], query_terms[t], w, p) for p, t, w in products]
        hit["html"] = highlighted(hit["text"], tokenizer, matches, encoded) if hit["text"] else html.escape(hit["id"])
