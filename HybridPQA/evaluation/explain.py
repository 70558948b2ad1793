"""Why a hybrid model scored a document as it did: for `hybridpqa explain` and RETRIEVER.VISUALIZE.

For one (query, document) pair: the top expansion terms of each side with their weights, every
matching term's contribution q_v * d_v to the sparse score (they sum to it), and the dense and
sparse shares of the hybrid score. Rendered as a terminal table or a self-contained HTML page.
"""
from __future__ import annotations

import dataclasses
import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError
from HybridPQA.files import safe_filename, write_atomic
from HybridPQA.heads import DENSE, HEADS, HYBRID, SPARSE
from HybridPQA.modeling import BiEncoder
from HybridPQA.modeling.encode import Encoder
from HybridPQA.scoring import Fusion, ranking

log = logging.getLogger(__name__)
NUM_VISUALIZED = 5  # RETRIEVER.VISUALIZE: test questions explained per split


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
    if not isinstance(encoder.model, BiEncoder) or not {DENSE, SPARSE} & set(encoder.heads):
        raise InputError("explain shows the terms and scores of dense / sparse heads; this model has neither "
                         "(BM25, cross-encoder or late interaction)")
    tokenizer = encoder.tokenizer
    q, d = (encoder.encode(side, [text], 1) for side, text in (("query", query), ("context", document)))
    out = Explanation(query, document, fusion=fusion.describe(), title=title)
    if SPARSE in q:
        out.query_terms, out.document_terms = _terms(q[SPARSE], tokenizer, top), _terms(d[SPARSE], tokenizer, top)
        qv, dv = q[SPARSE].toarray()[0], d[SPARSE].toarray()[0]
        shared = np.flatnonzero(qv * dv)
        products = qv[shared] * dv[shared]
        out.matches = [(tokenizer.convert_ids_to_tokens(int(shared[i])), float(qv[shared[i]]), float(dv[shared[i]]),
                        float(products[i])) for i in np.argsort(-products, kind="stable")]
        out.scores[SPARSE] = float(products.sum())
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


def _standing(e: Explanation) -> list[str]:
    """The document's rank and the best-ranked relevant document's, where a question was ranked."""
    lines = [f"rank {e.rank[0]} of {e.rank[1]}"] if e.rank else []
    if e.best_relevant is not None:
        docid, rank, scores = e.best_relevant
        lines.append(f"best relevant document: {docid}, rank {rank}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return lines


def render_text(e: Explanation) -> str:
    lines = [e.title] if e.title else []
    lines += _standing(e)
    lines += [f"query:    {e.query}", f"document: {e.document[:300]}{'...' if len(e.document) > 300 else ''}", ""]
    width = max([len(t) for t, *_ in e.query_terms + e.document_terms + [(m[0],) for m in e.matches]] + [4])
    if e.query_terms:
        lines.append(f"{'query term':<{width + 2}}{'weight':>8}    {'document term':<{width + 2}}{'weight':>8}")
        for i in range(max(len(e.query_terms), len(e.document_terms))):
            qt, qw = e.query_terms[i] if i < len(e.query_terms) else ("", None)
            dt, dw = e.document_terms[i] if i < len(e.document_terms) else ("", None)
            lines.append(f"{qt:<{width + 2}}{'' if qw is None else f'{qw:8.3f}':>8}    "
                         f"{dt:<{width + 2}}{'' if dw is None else f'{dw:8.3f}':>8}")
        lines += ["", f"{'matching term':<{width + 2}}{'q':>8}{'d':>8}{'q*d':>9}{'share':>8}"]
        total = e.scores.get(SPARSE) or 1.0
        lines += [f"{t:<{width + 2}}{qw:8.3f}{dw:8.3f}{p:9.4f}{p / total:8.1%}" for t, qw, dw, p in e.matches]
        lines.append(f"{'sparse score':<{width + 2}}{'':>16}{e.scores['sparse']:9.4f}")
    lines.append("")
    lines += [f"{name:<16}{value:10.4f}" for name, value in e.scores.items() if name in (DENSE, SPARSE)]
    if HYBRID in e.scores:
        shares = e.shares()
        lines += [f"hybrid = {e.scores['dense_part']:.4f} (dense, {shares['dense']:.0%}) + "
                  f"{e.scores['sparse_part']:.4f} (sparse, {shares['sparse']:.0%}) = {e.scores['hybrid']:.4f}",
                  f"fusion: {e.fusion}" + (f"; {e.note}" if e.note else "")]
    return "\n".join(lines) + "\n"


def _bar_rows(rows: list[tuple[str, float]], color: str) -> str:
    top = max([abs(w) for _, w in rows] + [1e-9])
    return "".join(f"<tr><td>{html.escape(t)}</td><td class=n>{w:.3f}</td><td class=bar><span style='width:"
                   f"{100 * abs(w) / top:.0f}%;background:{color}'></span></td></tr>" for t, w in rows)


def highlighted(text: str, tokenizer, matches: list[tuple[str, float, float, float]], encoded=None) -> str:
    """The document's own text, each word piece that matches a query term shaded by its contribution
    to the sparse score (its q*d in the tooltip); spans from the tokenizer's offsets (`encoded`: the
    text's encoding with offsets, when already at hand)."""
    weight = {t: p for t, _, _, p in matches}
    top = max(list(weight.values()) + [1e-9])
    if encoded is None:
        encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False, truncation=False)
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    out, at = [], 0
    for piece, (start, end) in zip(pieces, encoded["offset_mapping"]):
        if piece not in weight or start < at:
            continue
        share = weight[piece] / top
        out += [html.escape(text[at:start]), f"<mark style='background:rgba(230,120,0,{0.15 + 0.85 * share:.2f})' "
                f"title='{html.escape(piece)}: q*d {weight[piece]:.4f}'>{html.escape(text[start:end])}</mark>"]
        at = end
    return "".join(out + [html.escape(text[at:])])


def render_html(e: Explanation, tokenizer) -> str:
    style = ("body{font:14px sans-serif;margin:2em;max-width:70em}td{padding:2px 8px}.n{text-align:right;"
             "font-family:monospace}.bar{width:12em}.bar span{display:inline-block;height:10px}"
             "table{border-collapse:collapse;margin-right:3em;vertical-align:top;display:inline-table}"
             "th{text-align:left;border-bottom:1px solid #999}.doc{line-height:1.8;border:1px solid #ddd;padding:1em}"
             ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(e.title or 'explain')}</title>"
             f"<style>{style}</style></head><body>", f"<h2>{html.escape(e.title or 'Why this score')}</h2>",
             f"<p><b>Query:</b> {html.escape(e.query)}</p>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in _standing(e)]
    if HYBRID in e.scores:
        shares = e.shares()
        parts.append(f"<p><b>Hybrid</b> {e.scores['hybrid']:.4f} = dense {e.scores['dense_part']:.4f} "
                     f"({shares['dense']:.0%}) + sparse {e.scores['sparse_part']:.4f} ({shares['sparse']:.0%})"
                     f"<br><small>fusion: {html.escape(e.fusion)}{'; ' + html.escape(e.note) if e.note else ''}"
                     "</small></p>"
                     f"<div style='display:flex;width:30em;height:14px'><span style='flex:{shares['dense']:.3f};"
                     f"background:#4a7'></span><span style='flex:{shares['sparse']:.3f};background:#e78000'></span></div>"
                     "<p class=legend><span style='background:#4a7'></span> dense part (embedding similarity) "
                     "<span style='background:#e78000'></span> sparse part (matching terms, below)</p>")
    else:
        parts.append("<p>" + ", ".join(f"<b>{k}</b> {v:.4f}" for k, v in e.scores.items()) + "</p>")
    if e.query_terms:
        parts += ["<h3>Expansion terms</h3>",
                  f"<table><tr><th colspan=3>query</th></tr>{_bar_rows(e.query_terms, '#47a')}</table>",
                  f"<table><tr><th colspan=3>document</th></tr>{_bar_rows(e.document_terms, '#47a')}</table>",
                  f"<h3>Matching terms (sparse score {e.scores['sparse']:.4f})</h3><table><tr><th>term</th><th>q</th>"
                  "<th>d</th><th>q*d</th><th></th></tr>"]
        top = max([p for *_, p in e.matches] + [1e-9])
        parts += [f"<tr><td>{html.escape(t)}</td><td class=n>{q:.3f}</td><td class=n>{d:.3f}</td><td class=n>{p:.4f}"
                  f"</td><td class=bar><span style='width:{100 * p / top:.0f}%;background:#e78000'></span></td></tr>"
                  for t, q, d, p in e.matches]
        parts.append("</table>")
    parts += ["<h3>Document</h3><p><small>matching terms shaded by their share of the sparse score</small></p>",
              f"<div class=doc>{highlighted(e.document, tokenizer, e.matches)}</div>",
              "</body></html>"]
    return "\n".join(parts)


def _context(runs: dict[str, dict], qid: str, docid: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The dense and sparse scores of every document the runs hold for `qid`, and `docid`'s column."""
    docs = list(runs.get(DENSE, {}).get(qid, {}))
    if docid not in docs or set(docs) != set(runs.get(SPARSE, {}).get(qid, {})):
        return None
    return (np.array([runs[DENSE][qid][d] for d in docs]), np.array([runs[SPARSE][qid][d] for d in docs]),
            docs.index(docid))


def write_explanations(encoder: Encoder, data: RankingData, runs: dict[str, dict], fusion: Fusion, folder: Path) -> None:
    """RETRIEVER.VISUALIZE: pages for the first judged questions and their top hit (hybrid, else the only
    scorer). On a rerank split the runs hold every candidate, so the hybrid is fused exactly as ranked."""
    if not isinstance(encoder.model, BiEncoder) or not {DENSE, SPARSE} & set(encoder.heads):
        log.warning("RETRIEVER.VISUALIZE: nothing to show for this model type (no dense or sparse head)")
        return
    run = runs.get(HYBRID) or next(iter(runs.values()))
    folder.mkdir(parents=True, exist_ok=True)
    for qid in data.judged_qids()[:NUM_VISUALIZED]:
        if not run.get(qid):
            continue
        docid = ranking(run[qid])[0][0]
        label = "relevant" if data.qrels[qid].get(docid, 0) > 0 else "not relevant"
        context = _context(runs, qid, docid) if data.candidates is not None else None
        e = explain_pair(encoder, data.queries[qid], data.docs[docid], fusion,
                         title=f"{data.name} question {qid}, top hit {docid} ({label})", context=context)
        write_atomic(folder / f"{safe_filename(qid)}.txt", render_text(e))  # ids never choose the folder
        write_atomic(folder / f"{safe_filename(qid)}.html", render_html(e, encoder.tokenizer))


def explain_question(ranker, data: RankingData, qid: str, docid: str | None, fusion: Fusion, top: int = 15) -> Explanation:
    """Explain question `qid` of a split and `docid` (default: its top-ranked document), fused over
    every document the ranker ranks for it: its candidates, or the whole corpus."""
    if qid not in data.queries:
        raise InputError(f"--qid={qid}: no such question in split {data.name}")
    if docid is not None and docid not in data.docs:
        raise InputError(f"--docid={docid}: no such document in split {data.name}")
    candidates = None if data.candidates is None else {qid: data.candidates[qid]}
    keep = data.candidates[qid] + ([docid] if docid is not None and docid not in data.candidates[qid] else []) \
        if candidates is not None else list(data.docs)
    one = dataclasses.replace(data, queries={qid: data.queries[qid]}, docs={d: data.docs[d] for d in keep},
                              candidates=None if candidates is None else {qid: keep})
    ranker.index(one)
    scores = dict(next(ranker.head_scores(ranker.encode("query", [data.queries[qid]]), [qid]))[1])
    columns = ranker.docids if one.candidates is None else keep
    if {DENSE, SPARSE} <= set(scores):
        scores[HYBRID] = fusion.fuse(scores[DENSE], scores[SPARSE])
    chosen = scores.get(HYBRID, next(iter(scores.values())))[0]
    order = [d for d, _ in ranking(dict(zip(columns, chosen.tolist())))]
    docid = docid or order[0]
    rank = {d: r for r, d in enumerate(order, 1)}
    judged = data.qrels.get(qid, {})
    label = "relevant" if judged.get(docid, 0) > 0 else "not relevant"
    context = (scores[DENSE][0], scores[SPARSE][0], columns.index(docid)) if HYBRID in scores else None
    e = explain_pair(ranker.encoder, data.queries[qid], data.docs[docid], fusion, top,
                     title=f"question {qid}, document {docid} ({label})", context=context)
    e.rank = (rank[docid], len(order))
    relevant = [d for d in order if judged.get(d, 0) > 0]
    if relevant and relevant[0] != docid:
        column = columns.index(relevant[0])
        e.best_relevant = (relevant[0], rank[relevant[0]], {h: float(v[0, column]) for h, v in scores.items()})
    return e
