"""Encode any corpus into a saved sparse + dense index, resumably, for `hybridpqa search`.

Usage:
  hybridpqa index --model=MODEL --corpus=FILE --output=DIR [--config=FILE] [--backend=NAME] [--shard-size=N] [--store=NAME] [--uri=URI] [--collection=NAME] [--overwrite] [<KEY_VALUE>...]
  hybridpqa index --from-index=DIR --output=DIR [--store=NAME] [--uri=URI] [--collection=NAME] [--overwrite] [<KEY_VALUE>...]
  hybridpqa index -h | --help

Options:
  --model=MODEL      a HybridPQA checkpoint, or any masked LM (a folder or a hub name), used zero-shot
  --corpus=FILE      BEIR corpus.jsonl, a .jsonl of {id, text}, or a .tsv of id<TAB>text / id<TAB>title<TAB>text
  --output=DIR       the index folder: sparse/, dense/, texts.jsonl, index.json (and shards/)
  --config=FILE      experiment YAML for a masked LM used zero-shot (default: the defaults)
  --backend=NAME     torch, or onnx: --model is a `hybridpqa export --format=onnx` folder, encoded in ONNX
                     Runtime with no PyTorch model (default: whichever --model is); `search` uses it too
  --shard-size=N     documents per encoded shard; an interrupted run reuses finished shards [default: 10000]
  --store=NAME       where the vectors live: memory (the index's own arrays, searched in this process), or
                     a vector database, written one shard at a time: {databases} (RETRIEVER.INDEX.STORE;
                     default: memory; old spelling: --engine)
  --uri=URI          the database: a server's or a cluster's URL, http(s)://HOST:PORT (its key from
                     $QDRANT_API_KEY / $MILVUS_TOKEN, sent only to a URL named here, in your config or in
                     $QDRANT_URL / $MILVUS_URI); default: embedded in DIR (Qdrant's local mode, a Milvus
                     Lite file). A path or :memory: is refused: the embedded store always lives in DIR
  --collection=NAME  the database's collection (default: DIR's name and the index's id, so two folders
                     never share one); a collection of another index, or not HybridPQA's, is never replaced
  --from-index=DIR   an index of `hybridpqa index` (in memory) written into --store without encoding again
  --overwrite        replace an existing index in DIR (and its own collection, the one that carries its id)

KEY VALUE pairs override the model's config, as in `train`, e.g. RETRIEVER.MODEL.CONTEXT_MAX_LENGTH 256.

Under torchrun each process encodes its own shards (resumably, as above) and rank 0 merges them
into the index, identical to one process's:
  torchrun --nproc_per_node=4 -m HybridPQA.cli index --model=... --corpus=... --output=...
  torchrun --nnodes=2 --node_rank=R --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --nproc_per_node=8 -m HybridPQA.cli index ...
(several nodes need --output on a file system they share).

Examples:
  hybridpqa index --model=output/scifact_hybrid/checkpoints/step_001000 --corpus=data/raw/scifact/corpus.jsonl --output=output/scifact-index
  hybridpqa index --from-index=output/scifact-index --output=output/scifact-qdrant --store=qdrant
  hybridpqa index --model=... --corpus=... --output=output/scifact-milvus --store=milvus --uri=http://127.0.0.1:19530
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

from HybridPQA.backends import DATABASES, MEMORY, STORES
from HybridPQA.commands.common import parse, positive_int
from HybridPQA.errors import InputError

__doc__ = __doc__.replace("{databases}", " or ".join(DATABASES))  # the choices come from the registry


def index(model: str, corpus: str | Path, output: str | Path, config: str | None = None, overrides: list[str] = (),
          shard_size: int = 10_000, overwrite: bool = False, backend: str | None = None) -> dict:
    from HybridPQA.data.corpus import read_texts

    texts = read_texts(corpus)  # read and checked before torch loads and before anything is replaced
    import torch

    from HybridPQA.api import is_interrupted
    from HybridPQA.distributed import join
    from HybridPQA.files import hold_lock
    from HybridPQA.outputs import claim
    from HybridPQA.runtime import setup_logging

    cuda = torch.cuda.is_available()
    distributed = join(cuda)  # under torchrun: each process encodes its shards, on its own GPU where there are GPUs
    output = claim(output, "index", overwrite, [model], resumable=is_interrupted)
    if distributed is not None:
        distributed.barrier()  # every process has checked --output before any writes into it
        if cuda:
            overrides = [*overrides, "DEVICE", f"cuda:{distributed.local_rank}"]
    setup_logging(None)
    lock = hold_lock(output.with_name(f".{output.name}.lock"), f"{output} is being indexed", "or choose another --output") \
        if distributed is None or distributed.main else contextlib.nullcontext()  # one index job per output
    with lock:
        return _build(retriever_args=(model, list(overrides), config, backend), texts=texts, output=output,
                      shard_size=shard_size, distributed=distributed)


def _build(retriever_args: tuple, texts: dict[str, str], output: Path, shard_size: int, distributed) -> dict:
    from HybridPQA.api import SCORERS, HybridRetriever, SearchIndex
    from HybridPQA.retrieval.folder import is_index
    from HybridPQA.outputs import publish, staging

    started = time.perf_counter()
    retriever = HybridRetriever.from_pretrained(*retriever_args)
    loaded = time.perf_counter()
    # a replacement is built beside the old index (every rank the same folder, resumable)
    target = staging(output, "index", fresh=False) if is_index(output) else output
    built = SearchIndex.build(retriever, texts, target, shard_size, distributed)
    if built is None:  # another rank merges
        return {"rank": distributed.rank, "encode_seconds": round(time.perf_counter() - loaded, 2)}
    done = time.perf_counter()
    shutil.rmtree(target / "shards", ignore_errors=True)  # the index is complete; shards were for resuming
    engines = built.corpus.ready(SCORERS)  # approximate engines the config names: built once, kept in the index
    built.close()  # an embedded database is let go before its folder moves
    publish(target, output, "index")
    cut, encoded = retriever.encoder.truncated["context"]
    summary = {"index": str(output), "documents": len(built), "heads": list(built.corpus.heads),
               "default_scorer": retriever.default_scorer, "processes": distributed.world_size if distributed else 1,
               "load_seconds": round(loaded - started, 2), "encode_index_seconds": round(done - loaded, 2),
               "docs_per_s": round(len(built) / max(done - loaded, 1e-9), 1), "engine_build_seconds": engines,
               "where": built.corpus.describe(),
               "truncated": f"{cut} of {encoded} documents encoded now were cut at "
                            f"{retriever.encoding.context_max_length} tokens (RETRIEVER.MODEL.CONTEXT_MAX_LENGTH)"}
    print(json.dumps(summary, indent=2))
    return summary


def push(source: str | Path, output: str | Path, overrides: list[str] = (), overwrite: bool = False) -> dict:
    """An in-memory index written into a vector database without encoding again."""
    from HybridPQA.api import SearchIndex
    from HybridPQA.retrieval.folder import is_index
    from HybridPQA.outputs import claim, publish, staging
    from HybridPQA.runtime import setup_logging

    setup_logging(None)
    started = time.perf_counter()
    output = claim(output, "index", overwrite, [source])
    loaded = SearchIndex.load(source, overrides=list(overrides))
    target = staging(output, "index") if is_index(output) else output
    pushed = loaded.push(target)
    pushed.close()
    publish(target, output, "index")
    summary = {"index": str(output), "from": str(source), "documents": len(pushed), **pushed.corpus.describe(),
               "seconds": round(time.perf_counter() - started, 2)}
    print(json.dumps(summary, indent=2))
    return summary


def database_overrides(args: dict) -> list[str]:
    """--store, --uri, --collection as RETRIEVER.INDEX keys (after the KEY VALUE pairs: the flags win);
    without --collection the collection is named after --output and its id (retrieval.databases)."""
    pairs = [("STORE", args["--store"]), ("URI", args["--uri"]), ("COLLECTION", args["--collection"])]
    return [item for key, value in pairs if value is not None for item in (f"RETRIEVER.INDEX.{key}", value)]


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "index")
    databases = " or ".join(f"--store={name}" for name in DATABASES)
    if args["--store"] not in (None, *STORES):
        raise InputError(f"--store={args['--store']}: choose {', '.join(STORES)}")
    if args["--store"] in (None, MEMORY) and (args["--uri"] or args["--collection"]):
        raise InputError(f"{'--uri' if args['--uri'] else '--collection'} is a vector database's; give "
                         f"{databases}, or drop it (the default store is memory)")
    overrides = [*args["<KEY_VALUE>"], *database_overrides(args)]
    if args["--from-index"]:
        if args["--store"] in (None, MEMORY):
            raise InputError(f"--from-index: give {databases} to write the index into")
        return push(args["--from-index"], args["--output"], overrides, args["--overwrite"])
    return index(args["--model"], args["--corpus"], args["--output"], args["--config"], overrides,
                 positive_int(args["--shard-size"], "--shard-size"), args["--overwrite"], args["--backend"])
