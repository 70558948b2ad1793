"""Why a hybrid model scored a document as it did: `hybridpqa explain` and RETRIEVER.VISUALIZE.

For one (query, document) pair: the top expansion terms of each side with their weights, every
matching term's contribution q_v * d_v to the sparse score (they sum to it), and the dense and
sparse shares of the hybrid score. Rendered as a terminal table or a self-contained HTML page.
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from yacs.config import CfgNode

from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError
from HybridPQA.evaluation.encode import encode, normalized
from HybridPQA.files import check_output_file, safe_filename, write_atomic
from HybridPQA.modeling import BiEncoder
from HybridPQA.retrieval.fusion import Fusion

log = logging.getLogger(__name__)
NUM_VISUALIZED = 5  # RETRIEVER.VISUALIZE: test questions explained per split


@dataclass
class Explanation:
    query: str
    document: str
    query_terms: list[tuple[str, float]] = field(default_factory=list)  # top expansion terms, largest first
    document_terms: list[tuple[str, float]] = field(default_factory=list)
    matches: list[tuple[str, float, float, float]] = field(default_factory=list)  # term, q_v, d_v, q_v * d_v
    scores: dict[str, float] = field(default_factory=dict)  # dense, sparse, hybrid (raw linear fusion)
    fusion: str = ""
    title: str = ""

    def shares(self) -> dict[str, float]:
        """Dense and sparse parts of alpha * dense + (1 - alpha) * sparse, as fractions of their magnitudes."""
        parts = {h: abs(self.scores[f"weighted_{h}"]) for h in ("dense", "sparse") if f"weighted_{h}" in self.scores}
        total = sum(parts.values()) or 1.0
        return {h: v / total for h, v in parts.items()}


def _terms(row, tokenizer, k: int | None) -> list[tuple[str, float]]:
    order = np.argsort(-row.data, kind="stable")[:k]
    return [(tokenizer.convert_ids_to_tokens(int(row.indices[i])), float(row.data[i])) for i in order]


def explain_pair(model: BiEncoder, tokenizer, cfg: CfgNode, device: torch.device, query: str, document: str,
                 fusion: Fusion, top: int = 15, title: str = "", dtype: torch.dtype | None = None) -> Explanation:
    if not isinstance(model, BiEncoder) or not {"dense", "sparse"} & set(model.heads):
        raise InputError("explain shows the terms and scores of dense / sparse heads; this model has neither "
                         "(BM25, cross-encoder or late interaction)")
    m, s = cfg.RETRIEVER.MODEL, cfg.RETRIEVER.SOLVER
    q = encode(model, tokenizer, "query", [query], m.QUESTION_MAX_LENGTH, 1, device, dtype)
    d = encode(model, tokenizer, "context", [document], m.CONTEXT_MAX_LENGTH, 1, device, dtype)
    if s.FUNC == "cosine":
        q, d = normalized(q), normalized(d)
    out = Explanation(query, document, fusion=fusion.describe(), title=title)
    if "sparse" in q:
        out.query_terms, out.document_terms = _terms(q["sparse"], tokenizer, top), _terms(d["sparse"], tokenizer, top)
        qv, dv = q["sparse"].toarray()[0], d["sparse"].toarray()[0]
        shared = np.flatnonzero(qv * dv)
        products = qv[shared] * dv[shared]
        out.matches = [(tokenizer.convert_ids_to_tokens(int(shared[i])), float(qv[shared[i]]), float(dv[shared[i]]),
                        float(products[i])) for i in np.argsort(-products, kind="stable")]
        out.scores["sparse"] = float(products.sum())
    if "dense" in q:
        out.scores["dense"] = float((q["dense"] * d["dense"]).sum())
    if {"dense", "sparse"} <= set(out.scores):
        out.scores["weighted_dense"] = fusion.alpha * out.scores["dense"]
        out.scores["weighted_sparse"] = (1 - fusion.alpha) * out.scores["sparse"]
        out.scores["hybrid_linear"] = out.scores["weighted_dense"] + out.scores["weighted_sparse"]
    return out


def render_text(e: Explanation) -> str:
    lines = [e.title] if e.title else []
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
        total = e.scores.get("sparse") or 1.0
        lines += [f"{t:<{width + 2}}{qw:8.3f}{dw:8.3f}{p:9.4f}{p / total:8.1%}" for t, qw, dw, p in e.matches]
        lines.append(f"{'sparse score':<{width + 2}}{'':>16}{e.scores['sparse']:9.4f}")
    lines.append("")
    lines += [f"{name:<16}{value:10.4f}" for name, value in e.scores.items() if name in ("dense", "sparse")]
    if "hybrid_linear" in e.scores:
        shares = e.shares()
        lines += [f"hybrid = {e.scores['weighted_dense']:.4f} (dense, {shares['dense']:.0%}) + "
                  f"{e.scores['weighted_sparse']:.4f} (sparse, {shares['sparse']:.0%}) = {e.scores['hybrid_linear']:.4f}",
                  f"fusion: {e.fusion}; with a normalisation or RRF the ranked hybrid score also depends on the "
                  "query's other documents, the shares above are of the raw weighted scores"]
    return "\n".join(lines) + "\n"


def _bar_rows(rows: list[tuple[str, float]], color: str) -> str:
    top = max([abs(w) for _, w in rows] + [1e-9])
    return "".join(f"<tr><td>{html.escape(t)}</td><td class=n>{w:.3f}</td><td class=bar><span style='width:"
                   f"{100 * abs(w) / top:.0f}%;background:{color}'></span></td></tr>" for t, w in rows)


def _highlighted(text: str, tokenizer, matches: list[tuple[str, float, float, float]]) -> str:
    """The document as word pieces, each shaded by its term's contribution to the sparse score."""
    weight = {t: p for t, _, _, p in matches}
    top = max(list(weight.values()) + [1e-9])
    out = []
    for piece in tokenizer.tokenize(text)[:512]:
        word = piece[2:] if piece.startswith("##") else " " + piece
        share = weight.get(piece, 0.0) / top
        shown = html.escape(word)
        out.append(f"<mark style='background:rgba(230,120,0,{0.15 + 0.85 * share:.2f})' title='{weight[piece]:.4f}'>"
                   f"{shown}</mark>" if piece in weight else shown)
    return "".join(out)


def render_html(e: Explanation, tokenizer) -> str:
    style = ("body{font:14px sans-serif;margin:2em;max-width:70em}td{padding:2px 8px}.n{text-align:right;"
             "font-family:monospace}.bar{width:12em}.bar span{display:inline-block;height:10px}"
             "table{border-collapse:collapse;margin-right:3em;vertical-align:top;display:inline-table}"
             "th{text-align:left;border-bottom:1px solid #999}.doc{line-height:1.8;border:1px solid #ddd;padding:1em}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(e.title or 'explain')}</title>"
             f"<style>{style}</style></head><body>", f"<h2>{html.escape(e.title or 'Why this score')}</h2>",
             f"<p><b>Query:</b> {html.escape(e.query)}</p>"]
    if "hybrid_linear" in e.scores:
        shares = e.shares()
        parts.append(f"<p><b>Hybrid</b> {e.scores['hybrid_linear']:.4f} = dense {e.scores['weighted_dense']:.4f} "
                     f"({shares['dense']:.0%}) + sparse {e.scores['weighted_sparse']:.4f} ({shares['sparse']:.0%})"
                     f"<br><small>fusion: {html.escape(e.fusion)}; shares of the raw weighted scores</small></p>"
                     f"<div style='display:flex;width:30em;height:14px'><span style='flex:{shares['dense']:.3f};"
                     f"background:#4a7'></span><span style='flex:{shares['sparse']:.3f};background:#e78000'></span></div>")
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
    parts += ["<h3>Document</h3>", f"<div class=doc>{_highlighted(e.document, tokenizer, e.matches)}</div>",
              "</body></html>"]
    return "\n".join(parts)


def write_explanations(model: BiEncoder, tokenizer, data: RankingData, runs: dict[str, dict], cfg: CfgNode,
                       device: torch.device, fusion: Fusion, folder: Path, dtype: torch.dtype | None = None) -> None:
    """RETRIEVER.VISUALIZE: pages for the first judged questions and their top hit (hybrid, else the only scorer)."""
    if not isinstance(model, BiEncoder) or not {"dense", "sparse"} & set(model.heads):
        log.warning("RETRIEVER.VISUALIZE: nothing to show for this model type (no dense or sparse head)")
        return
    run = runs.get("hybrid") or next(iter(runs.values()))
    folder.mkdir(parents=True, exist_ok=True)
    for qid in data.judged_qids()[:NUM_VISUALIZED]:
        if not run.get(qid):
            continue
        docid = max(run[qid].items(), key=lambda kv: (kv[1], kv[0]))[0]
        label = "relevant" if data.qrels[qid].get(docid, 0) > 0 else "not relevant"
        e = explain_pair(model, tokenizer, cfg, device, data.queries[qid], data.docs[docid], fusion,
                         title=f"{data.name} question {qid}, top hit {docid} ({label})", dtype=dtype)
        write_atomic(folder / f"{safe_filename(qid)}.txt", render_text(e))  # ids never choose the folder
        write_atomic(folder / f"{safe_filename(qid)}.html", render_html(e, tokenizer))


def _top_candidate(model, tokenizer, cfg: CfgNode, device: torch.device, data: RankingData, qid: str,
                   fusion: Fusion, dtype: torch.dtype | None) -> str:
    """The question's top-ranked candidate (hybrid, else the only scorer); on a corpus split, its first positive."""
    import dataclasses

    from HybridPQA.evaluation.evaluator import Ranker

    if data.candidates is None:
        if not data.positives(qid):
            raise InputError(f"--qid={qid}: a corpus split, and this question has no positive; give --docid")
        return data.positives(qid)[0]
    one = dataclasses.replace(data, queries={qid: data.queries[qid]}, candidates={qid: data.candidates[qid]},
                              docs={d: data.docs[d] for d in data.candidates[qid]})
    ranker = Ranker(model, tokenizer, cfg, device, dtype)
    ranker.index(one)
    runs = ranker.rank([qid], fusion)
    ranked = (runs.get("hybrid") or next(iter(runs.values())))[qid]
    return max(ranked.items(), key=lambda kv: (kv[1], kv[0]))[0]


def explain_command(args: dict, top: int) -> Explanation:
    from HybridPQA.config import load_config
    from HybridPQA.data import build_split, find_split
    from HybridPQA.engine.runtime import build_device, build_precision
    from HybridPQA.modeling import build_model
    from HybridPQA.retrieval.fusion import fusion_from_cfg

    checkpoint = Path(args["--checkpoint"])
    html_path = check_output_file(args["--html"], "--html") if args["--html"] else None
    cfg = load_config(checkpoint / "config.yaml", dotenv_path=None) if (checkpoint / "config.yaml").is_file() else None
    if cfg is None:
        raise InputError(f"--checkpoint={checkpoint}: no config.yaml; give a directory under <run>/checkpoints/")
    device = build_device(cfg)
    model, tokenizer = build_model(cfg, checkpoint=checkpoint)
    model.to(device)
    dtype = build_precision(cfg, device, model)
    tuned = checkpoint.parent.parent / "fusion.json"
    fusion = Fusion.load(tuned) if tuned.is_file() else fusion_from_cfg(cfg)
    if args["--query"] is not None:
        e = explain_pair(model, tokenizer, cfg, device, args["--query"], args["--document"], fusion, top, dtype=dtype)
    else:
        data = build_split(find_split(args["--path_data"], args["--split"]), cfg.RETRIEVER.DATA)
        qid, docid = args["--qid"], args["--docid"]
        if qid not in data.queries:
            raise InputError(f"--qid={qid}: no such question in split {args['--split']} of {args['--path_data']}")
        if docid is None:
            docid = _top_candidate(model, tokenizer, cfg, device, data, qid, fusion, dtype)
        if docid not in data.docs:
            raise InputError(f"--docid={docid}: no such document in split {args['--split']} of {args['--path_data']}")
        label = "relevant" if data.qrels.get(qid, {}).get(docid, 0) > 0 else "not relevant"
        e = explain_pair(model, tokenizer, cfg, device, data.queries[qid], data.docs[docid], fusion, top,
                         title=f"question {qid}, document {docid} ({label})", dtype=dtype)
    print(render_text(e), end="")
    if html_path is not None:
        write_atomic(html_path, render_html(e, tokenizer))
        print(f"wrote {args['--html']}")
    return e
