"""A corpus indexed by one retriever (`SearchIndex`): built from a corpus (`build`, the indexing
workflow: resumable shards, torchrun, streamed into a vector database), saved and loaded, pushed
into a database, and searched: `search` for ranked ids, `search_detailed` for what the service and
the page show (the hits' head scores, the hybrid's split, the query vectors and the rows).

The index keeps its own fusion (the one recorded when it was built): loading an index never
changes the retriever it is given.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from HybridPQA.data.corpus import check_texts, read_texts
from HybridPQA.errors import InputError
from HybridPQA.files import publish_dir
from HybridPQA.heads import scorers
from HybridPQA.modeling.explain import Explanation, explain_pair
from HybridPQA.outputs import claim, id_of, kind_of, mark
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.databases import open_database
from HybridPQA.retrieval.databases.base import corpus_batches, push
from HybridPQA.retrieval.engines import drop_engines
from HybridPQA.retrieval.folder import (CONFIG_FILE, DOCIDS_FILE, ENGINES, INDEX_FILE, TEXTS_FILE, read_docids,
                                        read_index_meta, read_index_texts, write_index_files)
from HybridPQA.retrieval.shards import encode_in_shards, merge_shards, shard_batches
from HybridPQA.retrieval.store import CorpusStore, Hits
from HybridPQA.scoring import Fusion

from HybridPQA.api.request import check_request
from HybridPQA.api.retriever import Encoded, HybridRetriever, _named_uris


def is_interrupted(folder: Path) -> bool:
    """Whether `folder` holds an interrupted `index` of ours (our marker, no index.json yet), to continue."""
    folder = Path(folder)
    return kind_of(folder) == "index" and not (folder / INDEX_FILE).exists()


@dataclass
class Detailed:
    """A detailed search: `qids`, the query vectors (`encoded`), the scorer's `hits` (rows, scores, the
    hits' head scores and the hybrid's split) and `runs` {qid: [(docid, score), ...]}."""

    qids: list[str]
    encoded: Encoded
    scorer: str
    hits: Hits
    runs: dict[str, list[tuple[str, float]]]


class SearchIndex:
    """A corpus indexed by one retriever; `search` encodes queries with it and ranks every document."""

    def __init__(self, retriever: HybridRetriever, corpus: CorpusStore, texts: dict[str, str] | None = None,
                 fusion: Fusion | None = None):
        self.retriever, self.corpus, self.texts = retriever, corpus, texts  # corpus: in memory or in a database
        self.fusion = fusion or retriever.fusion  # the index's own: the one it was built with
        self._rows: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.corpus.docids)

    @property
    def scorers(self) -> list[str]:
        """The scorers this index serves (its heads')."""
        return list(scorers(self.corpus.heads))

    def rows(self) -> dict[str, int]:
        """{docid: row} of the indexed documents (built once)."""
        if self._rows is None:
            self._rows = {d: i for i, d in enumerate(self.corpus.docids)}
        return self._rows

    # -- searching -----------------------------------------------------------------------------
    def search(self, queries: str | list[str] | dict[str, str], k: int = 10, scorer: str | None = None):
        """Top `k` (docid, score) pairs, best first: one list for a string, a list of lists for a
        list, {qid: {docid: score}} (a run) for {qid: text}. `scorer` None: the retriever's default."""
        request = check_request(queries, k, scorer, self.scorers, self.retriever.default_scorer)
        qids, texts = list(request.queries), list(request.queries.values())
        q = self.retriever.encode_queries(texts).reps
        run = self.corpus.search(q, qids, self.fusion, request.k, (request.scorer,))[request.scorer]
        if isinstance(queries, dict):
            return run
        hits = [list(run[qid].items()) for qid in qids]
        return hits[0] if isinstance(queries, str) else hits

    def search_detailed(self, queries: list[str], k: int = 10, scorer: str | None = None,
                        max_k: int | None = None) -> Detailed:
        """A few queries (one batch) searched with detail: each hit's raw head scores and, for the
        hybrid, its dense and sparse parts over the documents the search fused (from the search's
        own scores: the corpus is scored once), with the query vectors to explain them by."""
        request = check_request(queries, k, scorer, self.scorers, self.retriever.default_scorer, max_k)
        qids = list(request.queries)
        encoded = self.retriever.encode_queries(list(request.queries.values()))
        hits = self.corpus.hits(encoded.reps, self.fusion, request.k, request.scorer, detail=True)
        runs = hits.run(qids, self.corpus.docids)
        return Detailed(qids, encoded, request.scorer, hits, {q: list(runs[q].items()) for q in qids})

    def explain(self, query: str, docid: str, top: int = 15) -> Explanation:
        """Terms, matches and the parts of the hybrid score of one indexed document (fused alone, with
        the index's fusion)."""
        text = (self.texts or {}).get(docid)
        if not text:
            raise InputError(f"id {docid!r}: the index keeps no text for it, so it cannot be explained")
        if self.retriever.encoder.model is None:
            raise InputError(f"{self.retriever.source}: explain needs the PyTorch model; load the checkpoint, not its "
                             "ONNX export")
        options = self.retriever.encoder.text
        query, text = (options.query(query), options.context(text)) if options is not None else (query, text)
        return explain_pair(self.retriever.encoder, query, text, self.fusion, top)

    def close(self) -> None:
        """Let go of a database connection (an embedded one locks its folder while open)."""
        self.corpus.close()

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, retriever: HybridRetriever, corpus: dict[str, str] | list[str] | str | Path,
              output: str | Path | None = None, shard_size: int = 10_000, distributed=None) -> SearchIndex | None:
        """Encode and index a corpus: {id: text}, a list of texts (ids "0", "1", ...), or a corpus file
        (data.corpus formats). With `output` the index is saved there, encoded in shards of
        `shard_size` documents that are kept, so an interrupted call resumes where it stopped. Under
        torchrun (`distributed`) each process encodes its own shards and rank 0 alone merges them
        into the index and returns it (the others return None). With RETRIEVER.INDEX.STORE a vector
        database, the shards are written into the collection of this index folder's id (connected,
        and its name and owner checked, before anything is encoded)."""
        corpus = read_texts(corpus) if isinstance(corpus, (str, Path)) else check_texts(corpus, "document", "index")
        docids, texts = list(corpus), list(corpus.values())
        store = retriever.engines.store
        if output is None and store != "memory":
            raise InputError(f"RETRIEVER.INDEX.STORE = {store!r}: give the index an output folder (it records the "
                             "database, the collection and the documents' ids)")
        if output is None:
            reps = retriever.encode_documents(texts).reps
            return cls(retriever, CorpusIndex.build(reps, docids, retriever.engines, retriever.terms or None), corpus)
        output, main = Path(output).expanduser().resolve(), distributed is None or distributed.main
        database = _prepare(retriever, output, docids) if main else None
        if distributed is not None:
            distributed.barrier()
        key = hashlib.sha256(json.dumps([retriever.source, retriever.overrides, asdict(retriever.encoding), shard_size,
                                         texts]).encode()).hexdigest()
        rank, world = (distributed.rank, distributed.world_size) if distributed else (0, 1)
        count = encode_in_shards(lambda part: retriever.encode_documents(part).reps, texts, output / "shards",
                                 shard_size, key, rank, world)
        if distributed is not None:
            distributed.barrier()
            if not main:
                return None
        if database is not None:  # streamed into the database one shard at a time
            push(database, shard_batches(output / "shards", count), retriever.engines.batch)
            index = cls(retriever, database, corpus)
        else:
            reps = merge_shards(output / "shards", count)
            index = cls(retriever, CorpusIndex.build(reps, docids, retriever.engines, retriever.terms or None), corpus)
        index.save(output)
        return index

    def save(self, path: str | Path) -> None:
        """<path>/{sparse,dense}/, texts.jsonl, config.yaml and index.json (the model, its fusion), written into
        <path>.tmp... and moved in by renames; encoded shards in <path>/shards are kept."""
        path = Path(path).expanduser().resolve()
        claim(path, "index", True, resumable=is_interrupted)  # never into a folder that is not an index of ours
        mark(path, "index")
        tmp = path.with_name(path.name + ".index.tmp")
        written, where = self.corpus.save(tmp), self.corpus.describe()
        r = self.retriever
        meta = {"id": id_of(path), "model": r.source, "identity": r.identity, "overrides": r.overrides,
                "encoding": asdict(r.encoding), "fusion": asdict(self.fusion), "documents": len(self),
                "heads": list(self.corpus.heads), "default_scorer": r.default_scorer}
        if where["engine"] != "memory":
            meta["database"] = where
        write_index_files(tmp, meta, self.texts, r.config)
        path.mkdir(parents=True, exist_ok=True)
        for name in (*written, TEXTS_FILE, *([CONFIG_FILE] if r.config is not None else []), INDEX_FILE):
            if (tmp / name).is_dir():
                publish_dir(tmp / name, path / name)
            else:
                (tmp / name).replace(path / name)
        tmp.rmdir()
        drop_engines(path / ENGINES)  # engines of an index this one replaces
        if isinstance(self.corpus, CorpusIndex):
            self.corpus.path = path  # engines built from now on are kept in it

    def push(self, output: str | Path) -> SearchIndex:
        """This in-memory index written into the vector database the retriever's settings name
        (RETRIEVER.INDEX.STORE, URI, COLLECTION), without encoding again; `output`: the new index folder
        (docids, texts, config and the database's record). -> the new index."""
        if not isinstance(self.corpus, CorpusIndex):
            raise InputError(f"this index is already in {self.corpus.name}; push an in-memory index")
        engines = self.retriever.engines
        if engines.store == "memory":
            raise InputError("push: set RETRIEVER.INDEX.STORE to a vector database (--store)")
        output = Path(output).expanduser().resolve()
        database = open_database(engines, output, self.corpus.docids, index_id=mark(output, "index"))
        push(database, corpus_batches(self.corpus, engines.batch), engines.batch)
        index = SearchIndex(self.retriever, database, self.texts, self.fusion)
        index.save(output)
        return index

    @classmethod
    def load(cls, path: str | Path, retriever: HybridRetriever | None = None, overrides: list[str] = ()) -> SearchIndex:
        """An index saved by `save` (or `hybridpqa index`); the retriever is loaded from index.json
        unless given, with `overrides` (KEY VALUE pairs: RETRIEVER.INDEX.SPARSE seismic, ...). The
        index searches with its own recorded fusion; a given retriever is left as it is."""
        path = Path(path)
        meta_file, meta = path / INDEX_FILE, read_index_meta(path)
        if retriever is None:  # the folder's config and model are its own; database URLs the user names come
            config = path / CONFIG_FILE  # only from `overrides`
            retriever = HybridRetriever.from_pretrained(meta["model"], [*([] if config.is_file() else meta["overrides"]),
                                                                        *overrides], config if config.is_file() else None,
                                                        trust_config=False)
            retriever.engines = dataclasses.replace(retriever.engines, named_uris=_named_uris(list(overrides)))
        _check_model(path, meta, retriever)
        fusion = Fusion.from_dict(meta["fusion"], str(meta_file))
        texts = read_index_texts(path / TEXTS_FILE) if (path / TEXTS_FILE).is_file() else None
        if "database" in meta:
            docids = read_docids(path / DOCIDS_FILE, meta["documents"])
            return cls(retriever, open_database(retriever.engines, path, docids, meta["database"]), texts, fusion)
        return cls(retriever, CorpusIndex.load(path, retriever.engines), texts, fusion)


def _prepare(retriever: HybridRetriever, output: Path, docids: list[str]):
    """Never into a folder that is not ours, nor the model; ours from the start, so an interrupted call
    continues. A database is connected and its collection checked before any encoding -> it, or None."""
    claim(output, "index", True, [retriever.source], resumable=is_interrupted)
    index_id = mark(output, "index")
    if retriever.engines.store == "memory":
        return None
    database = open_database(retriever.engines, output, docids, index_id=index_id)
    database.claimable()
    return database


def _check_model(path: Path, meta: dict, retriever: HybridRetriever) -> None:
    """The retriever is the model the index was built with: its encoding settings and its weights."""
    if json.loads(json.dumps(asdict(retriever.encoding))) != meta["encoding"]:
        raise InputError(f"{path}: indexed with other encoding settings ({meta['encoding']}) than this model's; "
                         "search it with the model it was built with")
    recorded = meta.get("identity")
    if recorded and retriever.identity and recorded != retriever.identity:
        raise InputError(f"{path / INDEX_FILE}: indexed with other weights than {retriever.source} has now (its sha256 "
                         "differs: retrained or replaced since); index the corpus again with this model")
