"""How an explanation and a search's hits are shown: the terminal table and the HTML page of
`hybridpqa explain` and RETRIEVER.VISUALIZE, and a document's text with its matching terms shaded
(the service's page and explain's page). The numbers come from modeling.explain.
"""
from __future__ import annotations

import html
import weakref

import numpy as np
from tokenizers import Tokenizer

from HybridPQA.heads import DENSE, HYBRID, SPARSE
from HybridPQA.modeling.explain import Explanation


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


_PLAIN = weakref.WeakKeyDictionary()


def _plain_backend(tokenizer):
    """A fast tokenizer's Rust encoder, copied once with no padding and no truncation (the original's
    settings are whatever the last transformers call left) -> None for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    if tokenizer not in _PLAIN:
        plain = Tokenizer.from_str(backend.to_str())
        plain.no_padding()
        plain.no_truncation()
        _PLAIN[tokenizer] = plain
    return _PLAIN[tokenizer]


def with_offsets(tokenizer, texts: list[str]) -> list[dict]:
    """Each text's word pieces without special tokens: [{input_ids, offset_mapping}] as int32 arrays
    ((n,) and (n, 2)). A fast tokenizer's Rust encoder is called directly: the transformers wrapper's
    conversion of the offsets doubled the time of a page of hits."""
    backend = _plain_backend(tokenizer)
    if backend is None:
        batch = tokenizer(texts, return_offsets_mapping=True, add_special_tokens=False, truncation=False)
        pairs = [(batch["input_ids"][j], batch["offset_mapping"][j]) for j in range(len(texts))]
    else:
        pairs = [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [{"input_ids": np.asarray(ids, dtype=np.int32),
             "offset_mapping": np.asarray(offsets, dtype=np.int32).reshape(-1, 2)} for ids, offsets in pairs]


def highlighted(text: str, tokenizer, matches: list[tuple[str, float, float, float]], encoded=None,
                vocabulary: list[str] | None = None) -> str:
    """The document's own text, each word piece that matches a query term shaded by its contribution
    to the sparse score (its q*d in the tooltip); spans from the tokenizer's offsets (`encoded`: the
    text's with_offsets encoding, when already at hand; `vocabulary`: the tokenizer's pieces by id,
    a list lookup instead of a tokenizer call per text)."""
    weight = {t: p for t, _, _, p in matches}
    top = max(list(weight.values()) + [1e-9])
    if encoded is None:
        encoded = with_offsets(tokenizer, [text])[0]
    ids, offsets = encoded["input_ids"].tolist(), encoded["offset_mapping"]
    distinct = list(set(ids))
    names = [vocabulary[i] for i in distinct] if vocabulary is not None else tokenizer.convert_ids_to_tokens(distinct)
    marks = {i: (f"<mark style='background:rgba(230,120,0,{0.15 + 0.85 * weight[name] / top:.2f})' "
                 f"title='{html.escape(name)}: q*d {weight[name]:.4f}'>") for i, name in zip(distinct, names) if name in weight}
    escape = html.escape if any(c in text for c in "&<>\"'") else str  # most texts have nothing to escape
    out, at = [], 0
    for position in [p for p, i in enumerate(ids) if i in marks]:  # only the matching pieces, in text order
        start, end = offsets[position].tolist()
        if start >= at:
            out += [escape(text[at:start]), marks[ids[position]], escape(text[start:end]), "</mark>"]
            at = end
    return "".join(out + [escape(text[at:])])


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
