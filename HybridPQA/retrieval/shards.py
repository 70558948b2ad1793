"""Resumable, shardable corpus encoding: shards of documents encoded one at a time, each written
through a temporary file and a rename, so an interrupted run keeps every finished shard and
continues, and the processes of a torchrun job each encode their own share."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic
from HybridPQA.heads import DENSE, HEADS, SPARSE
from HybridPQA.runtime import progress

log = logging.getLogger(__name__)
STAMP = "corpus.sha256"


def _save(file: Path, reps: dict) -> None:
    arrays = {}
    for head, vectors in reps.items():
        arrays |= HEADS[head].to_arrays(vectors)
    tmp = file.with_name(file.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(file)


def _load(file: Path) -> dict:
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{file}: unreadable shard ({err.__class__.__name__}); delete it and run again") from None
    return {head: vectors for head, vectors in ((h, HEADS[h].from_arrays(arrays)) for h in HEADS) if vectors is not None}


def encode_in_shards(encode: Callable[[list[str]], dict], texts: list[str], folder: Path, shard_size: int,
                     key: str, rank: int = 0, world_size: int = 1) -> int:
    """Encode `texts` by `encode` into shard files of `shard_size` documents in `folder`; this process
    writes shards rank, rank + world_size, ... and skips those already written, so an interrupted job
    resumes and a torchrun job splits the corpus. Only one shard is in memory at a time. `key` names
    what is encoded (corpus, model, settings): shards of another key are refused. -> the shard count."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / STAMP
    if stamp.is_file() and stamp.read_text().strip() != key:
        raise InputError(f"{folder}: holds shards of another corpus or model; choose another --output or delete it")
    if rank == 0:  # the others only read it: one writer
        write_atomic(stamp, key)
    starts = range(0, len(texts), shard_size)
    mine = [n for n in range(len(starts)) if n % world_size == rank]
    for n in progress(mine, desc="shards", unit="shard", enabled=len(mine) > 1):
        file = shard_file(folder, n)
        if file.is_file():
            log.info("%s: already encoded, reused", file)
        else:
            _save(file, encode(texts[starts[n]:starts[n] + shard_size]))
    return len(starts)


def shard_file(folder: Path, n: int) -> Path:
    return folder / f"shard_{n:05d}.npz"


def merge_shards(folder: Path, count: int) -> dict:
    """{head: vectors} of shards 0 .. count-1, in order."""
    parts = [_load(shard_file(folder, n)) for n in range(count)]
    return {head: HEADS[head].concat([p[head] for p in parts], np.arange(sum(HEADS[head].count(p[head]) for p in parts)))
            for head in parts[0]}


def shard_batches(folder: Path, count: int):
    """(rows, sparse, dense) of shards 0 .. count-1, one shard in memory at a time (for writing them
    into a vector database)."""
    start = 0
    for n in range(count):
        part = _load(shard_file(folder, n))
        if SPARSE not in part or DENSE not in part:
            raise InputError(f"{shard_file(folder, n)}: a vector database holds hybrid indexes (sparse and dense); "
                             "this model gives only " + ", ".join(part))
        size = part[SPARSE].shape[0]
        yield np.arange(start, start + size), part[SPARSE], part[DENSE].float().numpy()
        start += size
