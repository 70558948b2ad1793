"""Why a model scored a document as it did: the top expansion terms of each side, every matching
term's share of the sparse score, and the dense and sparse parts of the hybrid score.

Usage:
  hybridpqa explain --checkpoint=PATH (--query=TEXT --document=TEXT | --data=DIR --split=NAME --qid=ID [--docid=ID] [--index=DIR]) [--output=FILE] [--top=N]
  hybridpqa explain -h | --help

Options:
  --checkpoint=PATH  a checkpoint directory (<run>/checkpoints/<name>); its run's fusion.json if tuned
  --query=TEXT       a question
  --document=TEXT    a document
  --data=DIR         folder with the split (old spelling: --path_data)
  --split=NAME       NAME.json, NAME.csv or qrels/NAME.tsv in --data
  --qid=ID           a question of --split, fused over every document ranked for it (its candidates,
                     or the corpus); with no --docid, its top-ranked document
  --docid=ID         a document of --split
  --index=DIR        rank --qid over this saved index of the checkpoint (`hybridpqa index`, or its run's
                     index/<split>/) instead of encoding the corpus again
  --output=FILE      also write a self-contained HTML page (old spelling: --html)
  --top=N            expansion terms to show [default: 15]
"""
from __future__ import annotations

from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.errors import InputError
from HybridPQA.files import check_output_file, write_atomic


def explain(checkpoint: str | Path, query: str | None = None, document: str | None = None, data: str | Path | None = None,
            split: str | None = None, qid: str | None = None, docid: str | None = None,
            output: str | Path | None = None, top: int = 15, index: str | Path | None = None):
    """Explain a (query, document) pair, or question `qid` of a split; print it, and write HTML to `output`."""
    from HybridPQA.data import build_split, find_split
    from HybridPQA.evaluation.evaluator import build_ranker
    from HybridPQA.evaluation.explain import explain_question
    from HybridPQA.modeling.explain import explain_pair
    from HybridPQA.presentation import render_html, render_text
    from dataclasses import asdict

    from HybridPQA.modeling.pretrained import SavedModel
    from HybridPQA.retrieval.corpus import open_index
    from HybridPQA.runtime import setup_logging

    setup_logging()
    html_path = check_output_file(output, "--output") if output else None
    saved = SavedModel(checkpoint)
    if not saved.is_checkpoint:
        raise InputError(f"--checkpoint={checkpoint}: not a HybridPQA checkpoint (no hybridpqa.json); give a directory "
                         "under <run>/checkpoints/")
    cfg = saved.config()
    model, tokenizer, device, dtype = saved.load(cfg)
    fusion = saved.fusion(cfg)
    ranker = build_ranker(model, tokenizer, cfg, device, dtype)
    if query is not None:
        text = ranker.encoder.text
        e = explain_pair(ranker.encoder, text.query(query), text.context(document), fusion, top)
    else:
        ranking = build_split(find_split(data, split), cfg.RETRIEVER.DATA, data)
        where = f"split {split} of {data}"
        if qid not in ranking.queries:
            raise InputError(f"--qid={qid}: no such question in {where}")
        if docid is not None and docid not in ranking.docs:
            raise InputError(f"--docid={docid}: no such document in {where}")
        if index is not None:
            ranker.use_index(open_index(Path(index), str(checkpoint), asdict(ranker.encoding), list(ranking.docs),
                                        ranker.engines))
        e = explain_question(ranker, ranking, qid, docid, fusion, top)
    print(render_text(e), end="")
    if html_path is not None:
        write_atomic(html_path, render_html(e, tokenizer))
        print(f"wrote {html_path}")
    return e


def main(argv: list[str] | None = None):
    args = parse(__doc__, argv, "explain")
    return explain(args["--checkpoint"], args["--query"], args["--document"], args["--data"], args["--split"],
                   args["--qid"], args["--docid"], args["--output"], positive_int(args["--top"], "--top"), args["--index"])
