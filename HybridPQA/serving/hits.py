"""What the service returns for a query, from one detailed search (SearchIndex.search_detailed): each
hit with its text, its raw head scores, its hybrid score split into the dense and sparse parts (over
the documents the search fused), and the terms it matched (modeling.explain.matched_terms), each
marked as in the document's own text or an expansion the model added, with the text shaded
(HybridPQA.presentation)."""
from __future__ import annotations

import html

from HybridPQA.api import SearchIndex
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.modeling.explain import matched_terms
from HybridPQA.presentation import highlighted

TERMS_SHOWN = 12
TEXT_SHOWN = 1500  # characters of a hit's text returned


def describe_hits(index: SearchIndex, queries: list[str], k: int, scorer: str, detail: bool = True) -> list[list[dict]]:
    """For each query its top `k` hits: {id, score, text} and, with `detail`, dense, sparse (raw head
    scores), dense_part, sparse_part (hybrid only), terms: [{term, weight, expansion}] and html (the
    text, matches shaded)."""
    texts = index.texts or {}
    if not detail:
        return [[{"id": d, "score": float(v), "text": texts.get(d, "")[:TEXT_SHOWN]} for d, v in hits]
                for hits in index.search(list(queries), k, scorer)]
    found = index.search_detailed(list(queries), k, scorer)
    out = []
    for i, qid in enumerate(found.qids):
        hits = []
        for j, (docid, score) in enumerate(found.runs[qid]):
            hit = {"id": docid, "score": float(score), "text": texts.get(docid, "")[:TEXT_SHOWN],
                   **{h: float(found.hits.raw[h][i, j]) for h in (DENSE, SPARSE) if h in found.hits.raw}}
            if found.hits.parts is not None:
                hit["dense_part"], hit["sparse_part"] = (float(p[i, j]) for p in found.hits.parts)
            hits.append(hit)
        if found.encoded.sparse is not None and hits:
            _add_terms(index, hits, found.hits.rows[i, :len(hits)], found.encoded.sparse[i])
        out.append(hits)
    return out


def _add_terms(index: SearchIndex, hits: list[dict], rows, query_row) -> None:
    """Each hit's matching terms (largest query x document product first) and its highlighted text."""
    docs, _ = index.corpus.doc_vectors(rows)
    tokenizer, terms = index.retriever.encoder.tokenizer, index.retriever.terms
    texts = [hit["text"] or " " for hit in hits]  # one tokenizer call for every hit's text
    encodings = tokenizer(texts, return_offsets_mapping=True, add_special_tokens=False, truncation=False)
    for j, hit in enumerate(hits):
        matched = matched_terms(query_row, docs[j])
        encoded = {key: encodings[key][j] for key in ("input_ids", "offset_mapping")}
        own = set(encoded["input_ids"])
        hit["terms"] = [{"term": terms[t], "weight": round(p, 5), "expansion": t not in own}
                        for t, _, _, p in matched[:TERMS_SHOWN]]
        shaded = [(terms[t], q, d, p) for t, q, d, p in matched]
        hit["html"] = highlighted(hit["text"], tokenizer, shaded, encoded, terms) if hit["text"] else html.escape(hit["id"])
