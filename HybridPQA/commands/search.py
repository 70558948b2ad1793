"""Search a saved index (`hybridpqa index`) and write a TREC run, or print the top hits.

Usage:
  hybridpqa search --index=DIR (--queries=FILE | --query=TEXT) [--output=RUN] [--k=K] [--scorer=NAME] [--settings=FILE] [--overwrite] [<KEY_VALUE>...]
  hybridpqa search -h | --help

Options:
  --index=DIR      an index folder written by `hybridpqa index`
  --queries=FILE   BEIR queries.jsonl, a .jsonl of {id, text}, or a .tsv of id<TAB>text
  --query=TEXT     one query
  --output=RUN     TREC run file to write; without it the top hits are printed with their text
  --k=K            documents per query [default: 100]
  --scorer=NAME    hybrid | dense | sparse; default: what the model was trained for (a trained hybrid's
                   fusion; sparse for a masked LM zero-shot; dense for a sentence encoder), logged
  --settings=FILE  search settings (RETRIEVER.INDEX keys: engines, their parameters, k' per head) from a
                   YAML file, e.g. configs/search/1m.yaml; KEY VALUE pairs win over it
  --overwrite      replace an existing run file

KEY VALUE pairs override the index's config, e.g. the engines: RETRIEVER.INDEX.SPARSE seismic,
RETRIEVER.INDEX.DENSE hnsw, RETRIEVER.INDEX.HYBRID candidates, RETRIEVER.INDEX.CANDIDATES 100.

Example:
  hybridpqa search --index=output/scifact-index --queries=data/raw/scifact/queries.jsonl --output=output/scifact.trec
  hybridpqa search --index=output/scifact-index --query="do statins lower the risk of dementia?" --k=5
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.config import search_settings
from HybridPQA.errors import InputError


def search(index: str | Path, queries: str | Path | None = None, query: str | None = None,
           output: str | Path | None = None, k: int = 100, scorer: str | None = None, overwrite: bool = False,
           overrides: list[str] = ()) -> dict:
    from HybridPQA.data.corpus import read_texts
    from HybridPQA.files import check_output_file

    if output is not None:  # flags, queries and the folder are checked before torch and the model load
        output = check_output_file(output, "--output")
        if output.exists() and not overwrite:
            raise InputError(f"--output={output}: exists; pass --overwrite to replace it")
    texts = read_texts(queries, "query") if queries is not None else {"q": query}
    if query is not None and not query.strip():
        raise InputError("--query: empty text")
    if not (Path(index) / "index.json").is_file():
        raise InputError(f"{index}: not a search index (no index.json); build one with `hybridpqa index`")
    from HybridPQA.api.request import SCORERS, check_request, check_scorer

    if scorer is not None:  # before torch and the model load; against the index's heads once loaded
        check_scorer(scorer, SCORERS, scorer, "--scorer")
    from HybridPQA.api import SearchIndex
    from HybridPQA.data.trec import write_trec
    from HybridPQA.runtime import setup_logging

    setup_logging(None)
    started = time.perf_counter()
    loaded = SearchIndex.load(index, overrides=list(overrides))
    scorer = check_request(texts, k, scorer, loaded.scorers, loaded.retriever.default_scorer, source="--queries").scorer
    loaded_at = time.perf_counter()
    engines = loaded.corpus.ready((scorer,))  # approximate engines: loaded from the index, or built once and kept
    ready = time.perf_counter()
    run = loaded.search(texts, k=k, scorer=scorer)
    done = time.perf_counter()
    summary = {"queries": len(texts), "k": k, "scorer": scorer, "load_seconds": round(loaded_at - started, 2),
               "engine_seconds": engines, "search_seconds": round(done - ready, 2),
               "ms_per_query": round(1000 * (done - ready) / len(texts), 2)}
    if output is None:
        for qid, hits in run.items():
            print(f"{qid}: {texts[qid]}")
            for rank, (docid, score) in enumerate(hits.items(), 1):
                text = (loaded.texts or {}).get(docid, "")
                print(f"  {rank:>3}. {score:9.4f}  {docid}  {text[:100]}")
    else:
        write_trec(run, output, f"hybridpqa.{scorer}")
        summary["run"] = str(output)
        print(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "search")
    settings = search_settings(args["--settings"]) if args["--settings"] else []
    return search(args["--index"], args["--queries"], args["--query"], args["--output"],
                  positive_int(args["--k"], "--k"), args["--scorer"], args["--overwrite"], [*settings, *args["<KEY_VALUE>"]])
