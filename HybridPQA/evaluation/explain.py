"""Explanations of a ranked split: RETRIEVER.VISUALIZE's pages for the first test questions, and
`hybridpqa explain --qid`'s question with the document's rank and the best relevant document's.
Computed by modeling.explain, rendered by HybridPQA.presentation."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from HybridPQA.data.readers import RankingData
from HybridPQA.errors import InputError
from HybridPQA.files import safe_filename, write_atomic
from HybridPQA.heads import DENSE, HYBRID, SPARSE
from HybridPQA.modeling import BiEncoder
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.explain import Explanation, explain_pair
from HybridPQA.presentation import render_html, render_text
from HybridPQA.scoring import Fusion, ranking

log = logging.getLogger(__name__)
NUM_VISUALIZED = 5  # RETRIEVER.VISUALIZE: test questions explained per split


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
