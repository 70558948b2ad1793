"""What the service returns for a query, from one detailed search (SearchIndex.search_detailed): each
hit with its text, its raw head scores, its hybrid score split into the dense and sparse parts (over
the documents the search fused), and the terms it matched (modeling.explain.matched_terms), each
marked as in the document's own text or an expansion the model added, with the text shaded
(HybridPQA.presentation)."""
from __future__ import annotations

import html
from collections import OrderedDict

from HybridPQA.api import SearchIndex
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.modeling.explain import CsrRow, matched_terms
from HybridPQA.presentation import highlighted, with_offsets

TERMS_SHOWN = 12
TEXT_SHOWN = 1500  # characters of a hit's text returned
PIECES_KEPT = 4096  # hit texts whose word pieces a service keeps (~4 KB each as int32 arrays: ~16 MB)


class Pieces:
    """The word pieces and offsets of the hit texts one index showed last (least recently shown out
    first, `size` texts): tokenising ten 1,500-character abstracts took ~5 ms, most of a detailed
    search, and the texts people are shown repeat. One per index: its tokenizer is fixed."""

    def __init__(self, size: int = PIECES_KEPT):
        self.size, self.kept, self.asked, self.found = size, OrderedDict(), 0, 0

    def encode(self, tokenizer, texts: list[str]) -> list[dict]:
        missing = list(dict.fromkeys(t for t in texts if t not in self.kept))
        fresh = dict(zip(missing, with_offsets(tokenizer, missing))) if missing else {}
        self.asked, self.found = self.asked + len(texts), self.found + len(texts) - len(missing)
        out = [fresh.get(t) or self.kept[t] for t in texts]
        for text, encoded in zip(texts, out):
            self.kept[text] = encoded
            self.kept.move_to_end(text)
        while len(self.kept) > self.size:
            self.kept.popitem(last=False)
        return out


def describe_hits(index: SearchIndex, queries: list[str], k: int, scorer: str, detail: bool = True,
                  pieces: Pieces | None = None) -> list[list[dict]]:
    """For each query its top `k` hits: {id, score, text} and, with `detail`, dense, sparse (raw head
    scores), dense_part, sparse_part (hybrid only), terms: [{term, weight, expansion}] and html (the
    text, matches shaded; `pieces`: the index's cache of hit texts' word pieces)."""
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
            _add_terms(index, hits, found.hits.rows[i, :len(hits)], found.encoded.sparse[i], pieces or Pieces(0))
        out.append(hits)
    return out


def _add_terms(index: SearchIndex, hits: list[dict], rows, query_row, pieces: Pieces) -> None:
    """Each hit's matching terms (largest query x document product first) and its highlighted text."""
    docs, _ = index.corpus.doc_vectors(rows)
    tokenizer, terms = index.retriever.encoder.tokenizer, index.retriever.terms
    encodings = pieces.encode(tokenizer, [hit["text"] or " " for hit in hits])
    for j, (hit, encoded) in enumerate(zip(hits, encodings)):
        row = slice(docs.indptr[j], docs.indptr[j + 1])  # the CSR row's arrays: no scipy row object per hit
        matched = matched_terms(query_row, CsrRow(docs.indices[row], docs.data[row]))
        own = set(encoded["input_ids"].tolist())
        hit["terms"] = [{"term": terms[t], "weight": round(p, 5), "expansion": t not in own}
                        for t, _, _, p in matched[:TERMS_SHOWN]]
        shaded = [(terms[t], q, d, p) for t, q, d, p in matched]
        hit["html"] = highlighted(hit["text"], tokenizer, shaded, encoded, terms) if hit["text"] else html.escape(hit["id"])
