"""Encode any corpus into a saved sparse + dense index, resumably, for `hybridpqa search`.

Usage:
  hybridpqa index --model=MODEL --corpus=FILE --output=DIR [--config=FILE] [--shard-size=N] [--overwrite] [<KEY_VALUE>...]
  hybridpqa index -h | --help

Options:
  --model=MODEL      a HybridPQA checkpoint, or any masked LM (a folder or a hub name), used zero-shot
  --corpus=FILE      BEIR corpus.jsonl, a .jsonl of {id, text}, or a .tsv of id<TAB>text / id<TAB>title<TAB>text
  --output=DIR       the index folder: sparse/, dense/, texts.jsonl, index.json (and shards/)
  --config=FILE      experiment YAML for a masked LM used zero-shot (default: the defaults)
  --shard-size=N     documents per encoded shard; an interrupted run reuses finished shards [default: 10000]
  --overwrite        replace an existing index in DIR

KEY VALUE pairs override the model's config, as in `train`, e.g. RETRIEVER.MODEL.CONTEXT_MAX_LENGTH 256.

Example:
  hybridpqa index --model=output/scifact_hybrid/checkpoints/step_001000 --corpus=data/raw/scifact/corpus.jsonl --output=output/scifact-index
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.errors import InputError


def index(model: str, corpus: str | Path, output: str | Path, config: str | None = None, overrides: list[str] = (),
          shard_size: int = 10_000, overwrite: bool = False) -> dict:
    from HybridPQA.api import INDEX_FILE, HybridRetriever
    from HybridPQA.data.corpus import read_texts
    from HybridPQA.runtime import setup_logging

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output={output}: is a file; give a folder for the index")
    if (output / INDEX_FILE).is_file():
        if not overwrite:
            raise InputError(f"{output}: already holds an index; pass --overwrite to replace it")
        shutil.rmtree(output)
    setup_logging(None)
    started = time.perf_counter()
    texts = read_texts(corpus)
    retriever = HybridRetriever.from_pretrained(model, list(overrides), config)
    loaded = time.perf_counter()
    built = retriever.index(texts, output=output, shard_size=shard_size)
    done = time.perf_counter()
    shutil.rmtree(output / "shards", ignore_errors=True)  # the index is complete; shards were for resuming
    summary = {"index": str(output), "documents": len(built), "heads": list(built.corpus.heads),
               "load_seconds": round(loaded - started, 2), "encode_index_seconds": round(done - loaded, 2),
               "docs_per_s": round(len(built) / max(done - loaded, 1e-9), 1)}
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "index")
    return index(args["--model"], args["--corpus"], args["--output"], args["--config"], args["<KEY_VALUE>"],
                 positive_int(args["--shard-size"], "--shard-size"), args["--overwrite"])
