"""The Python API: load a model, encode, score, index a corpus and search it, explain a score.

    from HybridPQA import HybridRetriever
    retriever = HybridRetriever.from_pretrained("output/quickstart/checkpoints/step_000400")
    index = retriever.index({"d1": "usb-c charging cable", "d2": "a wool sweater"})
    index.search(["does it charge over usb?"], k=2)   # [[("d1", 0.71), ("d2", 0.12)]]

Every call applies the model's saved encoding settings (max lengths, similarity, top-k) and its
fusion, so scores are those `hybridpqa evaluate` ranks with.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from HybridPQA.config import load_config
from HybridPQA.data import build_text_options
from HybridPQA.data.corpus import check_texts, read_texts
from HybridPQA.data.text import TextOptions
from HybridPQA.distributed import Distributed
from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import build_encoder
from HybridPQA.evaluation.explain import Explanation, explain_pair
from HybridPQA.files import publish_dir, write_atomic
from HybridPQA.heads import DENSE, HEADS, HYBRID, SPARSE, scorers
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.encoding import build_encoding
from HybridPQA.modeling.onnx_export import export_onnx
from HybridPQA.modeling.onnx_runtime import is_onnx_export
from HybridPQA.modeling.pretrained import ModelKind, SavedModel
from HybridPQA.outputs import claim, id_of, kind_of, mark
from HybridPQA.retrieval.corpus import (
    CONFIG_FILE,
    DOCIDS_FILE,
    ENGINES,
    INDEX_FILE,
    TEXTS_FILE,
    CorpusIndex,
    read_docids,
    read_index_meta,
    read_index_texts,
    write_index_files,
)
from HybridPQA.retrieval.connect import open_database
from HybridPQA.retrieval.database import VectorDatabase, corpus_batches, push
from HybridPQA.retrieval.engines import EngineSettings, build_engine_settings, drop_engines
from HybridPQA.retrieval.shards import encode_in_shards, merge_shards, shard_batches
from HybridPQA.scoring import Fusion

SCORERS = scorers((DENSE, SPARSE))  # hybrid, dense, sparse
log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Texts encoded by one side: `reps` {head: vectors} as heads.HEADS keeps them; `terms[v]` names
    sparse column v. `dense` (N, D) float32 numpy and `sparse` (N, V) CSR are views of them."""

    reps: dict
    terms: list[str]

    @property
    def dense(self) -> np.ndarray | None:
        return self.reps[DENSE].numpy() if DENSE in self.reps else None

    @property
    def sparse(self) -> sp.csr_matrix | None:
        return self.reps.get(SPARSE)

    def decode(self, row: int = 0, top: int | None = None) -> dict[str, float]:
        """{term: weight} of row `row`'s sparse vector, largest first."""
        if self.sparse is None:
            raise InputError("this model has no sparse head, so there are no terms to decode")
        vec = self.sparse[row]
        order = np.argsort(-vec.data, kind="stable")[:top]
        return {self.terms[vec.indices[i]]: float(vec.data[i]) for i in order}


class HybridRetriever:
    """A bi-encoder (hybrid, dense or sparse): its encoder (modeling.encode.Encoder: the model with its
    encoding settings and text options), its fusion, and the scorer it searches with unless told
    (`default_scorer`: what the model was trained for, `kind` says)."""

    def __init__(self, encoder: Encoder, fusion: Fusion, source: str = "", overrides: list[str] = (),
                 engines: EngineSettings | None = None, config: str | None = None,
                 kind: ModelKind = ModelKind("checkpoint"), identity: str | None = None):
        if not {DENSE, SPARSE} & set(encoder.heads):
            heads = sorted(encoder.heads)
            raise InputError(f"{source}: HybridRetriever serves dense / sparse / hybrid bi-encoders; this model has "
                             f"{heads or 'no neural heads'} (use `hybridpqa evaluate` for BM25, cross-encoders "
                             "and late interaction)")
        self.encoder, self.fusion, self.source, self.overrides = encoder, fusion, source, list(overrides)
        self.engines = engines or EngineSettings()  # RETRIEVER.INDEX: the engine of each head when searching
        self.config = config  # the merged config, saved with an index so search rebuilds the same model
        self.terms = encoder.terms() if SPARSE in encoder.heads else []
        self.kind = kind
        self.identity = identity  # the sha256 of the weights' own (None: a hub model): an index records it
        self.default_scorer, self.why = kind.default_scorer(encoder.heads)

    @property
    def encoding(self):
        return self.encoder.encoding

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, overrides: list[str] = (),
                        config: str | Path | None = None, backend: str | None = None,
                        trust_config: bool = True) -> HybridRetriever:
        """A HybridPQA checkpoint, or any masked LM (a folder or a hub name) used zero-shot with the
        defaults, `config` and `overrides` (KEY VALUE pairs, as on the command line). The folder of
        `hybridpqa export --format=onnx` encodes in ONNX Runtime, with no PyTorch model (`backend`
        "onnx" says it must be one; None: whichever the folder is). `trust_config`: `config` is the
        user's own, so a database URL in it may get the key from the environment (an index folder's
        config is not)."""
        if backend not in (None, "torch", "onnx"):
            raise InputError(f"backend {backend!r}: choose torch or onnx")
        if backend == "onnx" or (backend is None and is_onnx_export(path_or_name)):
            return cls._from_onnx(Path(path_or_name).expanduser(), list(overrides), config, trust_config)
        if backend == "torch" and is_onnx_export(path_or_name):
            raise InputError(f"{path_or_name}: an ONNX export (hybridpqa_onnx.json), which has no PyTorch model; "
                             "use --backend=onnx (or leave --backend out)")
        saved = SavedModel(path_or_name)
        cfg = saved.config(config, list(overrides))
        model, tokenizer, device, dtype = saved.load(cfg)
        named = cfg if trust_config and (config is not None or not saved.is_checkpoint) else None
        retriever = cls(build_encoder(model, tokenizer, cfg, device, dtype), saved.fusion(cfg), saved.source,
                        list(overrides), _engines(cfg, overrides, named), cfg.dump(), saved.kind, saved.identity())
        log.info("default scorer %s: %s", retriever.default_scorer, retriever.why)
        return retriever

    @classmethod
    def _from_onnx(cls, folder: Path, overrides: list[str], config: str | Path | None,
                   trust_config: bool = True) -> HybridRetriever:
        from HybridPQA.modeling.onnx_runtime import OnnxEncoder, read_manifest

        manifest = read_manifest(folder)
        cfg = load_config(config or folder / CONFIG_FILE, overrides, dotenv_path=None)
        s = cfg.RETRIEVER.SOLVER
        try:
            text = TextOptions(**manifest["text"])
        except TypeError:
            raise InputError(f"{folder / 'hybridpqa_onnx.json'}: text {manifest['text']} holds options HybridPQA "
                             "does not know; export the model again") from None
        if build_text_options(cfg.RETRIEVER.DATA) != text:
            raise InputError(f"{folder}: the config or overrides change text options that the export fixes "
                             f"({asdict(text)}); export the model again with them")
        encoder = OnnxEncoder(folder, (s.TEST_BATCH_SIZE, s.TEST_CTX_BSZ), text)
        if build_encoding(cfg) != encoder.encoding:
            raise InputError(f"{folder}: the overrides change encoding settings that the exported graphs fix "
                             f"({asdict(encoder.encoding)}); export the model again with them")
        try:
            kind = ModelKind(**{**manifest["kind"], "settings": tuple(manifest["kind"]["settings"])})
        except (KeyError, TypeError):
            raise InputError(f"{folder / 'hybridpqa_onnx.json'}: no valid 'kind'; export the model again") from None
        named = cfg if trust_config and config is not None else None
        retriever = cls(encoder, Fusion.from_dict(manifest.get("fusion") or {}, str(folder)), str(folder), overrides,
                        _engines(cfg, overrides, named), cfg.dump(), kind, encoder.identity)
        log.info("encoding with ONNX Runtime (%s); default scorer %s: %s", folder, retriever.default_scorer,
                 retriever.why)
        return retriever

    def export_onnx(self, folder: str | Path, top_k: int | None = None, int8: bool = False,
                    heads: tuple[str, ...] | None = None) -> dict:
        """The encoder as ONNX graphs in `folder` (modeling.onnx_export; `heads`: only these), with
        the config, fusion and kind that `from_pretrained(folder)` reads back -> the manifest."""
        if self.encoder.model is None:
            raise InputError(f"{self.source}: already an ONNX export; export the checkpoint it came from")
        manifest = export_onnx(self.encoder, folder, top_k, int8, heads, fusion=asdict(self.fusion),
                               kind=asdict(self.kind))
        write_atomic(Path(folder) / CONFIG_FILE, self.config)
        return manifest

    # -- encoding and scoring ------------------------------------------------------------------
    def _encode(self, side: str, texts: list[str], sources: list[str] | None = None) -> Encoded:
        what = "query" if side == "query" else "document"
        texts = list(check_texts([texts] if isinstance(texts, str) else texts, what).values())
        return Encoded(self.encoder.encode_raw(side, texts, sources), self.terms)

    def encode_queries(self, texts: list[str]) -> Encoded:
        return self._encode("query", texts)

    def encode_documents(self, texts: list[str], sources: list[str] | None = None) -> Encoded:
        """`sources`: each text's evidence source (review, attribute, ...), where the model's text
        options use it (INSERT_SOURCE, FLATTEN_ATTRIBUTE)."""
        return self._encode("context", texts, sources)

    def score(self, query: str, documents: list[str], scorer: str | None = None,
              sources: list[str] | None = None) -> np.ndarray:
        """(len(documents),) scores of `query` against each document (scorer None: the default); a
        hybrid fused over them."""
        q, d = self.encode_queries([query]).reps, self.encode_documents(documents, sources).reps
        scores = {h: HEADS[h].matrix(v, d[h]) for h, v in q.items()}
        if {DENSE, SPARSE} <= set(scores):
            scores[HYBRID] = self.fusion.fuse(scores[DENSE], scores[SPARSE])
        return _pick(scores, scorer or self.default_scorer)[0]

    def explain(self, query: str, document: str, top: int = 15) -> Explanation:
        """Terms, matches and the dense / sparse parts of the hybrid score of one pair (fused alone)."""
        if self.encoder.model is None:
            raise InputError(f"{self.source}: explain needs the PyTorch model; load the checkpoint, not its ONNX export")
        text = self.encoder.text or TextOptions()
        return explain_pair(self.encoder, text.query(query), text.context(document), self.fusion, top)

    # -- indexing and searching ----------------------------------------------------------------
    def index(self, corpus: dict[str, str] | list[str] | str | Path, output: str | Path | None = None,
              shard_size: int = 10_000, distributed: Distributed | None = None) -> SearchIndex | None:
        """Encode and index a corpus: {id: text}, a list of texts (ids "0", "1", ...), or a corpus file
        (data.corpus formats). With `output` the index is saved there, encoded in shards of
        `shard_size` documents that are kept, so an interrupted call resumes where it stopped. Under
        torchrun (`distributed`) each process encodes its own shards and rank 0 alone merges them
        into the index and returns it (the others return None). With RETRIEVER.INDEX.ENGINE a vector
        database, the shards are written into the collection of this index folder's id (connected,
        and its name and owner checked, before anything is encoded)."""
        corpus = read_texts(corpus) if isinstance(corpus, (str, Path)) else check_texts(corpus, "document", "index")
        docids, texts = list(corpus), list(corpus.values())
        if output is None and self.engines.database != "memory":
            raise InputError(f"RETRIEVER.INDEX.ENGINE = {self.engines.database!r}: give the index an output folder "
                             "(it records the database, the collection and the documents' ids)")
        if output is None:
            reps = self.encode_documents(texts).reps
            return SearchIndex(self, CorpusIndex.build(reps, docids, self.engines, self.terms or None), corpus)
        # never into a folder that is not ours, nor the model; ours from the start, so an interrupted call
        # continues. Under torchrun rank 0 checks and marks it while the others wait
        output, main = Path(output).expanduser().resolve(), distributed is None or distributed.main
        database = None
        if main:
            claim(output, "index", True, [self.source], resumable=is_interrupted)
            index_id = mark(output, "index")
            if self.engines.database != "memory":  # connected and its collection checked before any encoding
                database = open_database(self.engines, output, docids, index_id=index_id)
                database.claimable()
        if distributed is not None:
            distributed.barrier()
        key = hashlib.sha256(json.dumps([self.source, self.overrides, asdict(self.encoding), shard_size, texts])
                             .encode()).hexdigest()
        rank, world = (distributed.rank, distributed.world_size) if distributed else (0, 1)
        count = encode_in_shards(lambda part: self.encode_documents(part).reps, texts, output / "shards",
                                 shard_size, key, rank, world)
        if distributed is not None:
            distributed.barrier()
            if not main:
                return None
        if database is not None:  # streamed into the database one shard at a time
            push(database, shard_batches(output / "shards", count), self.engines.batch)
            index = SearchIndex(self, database, corpus)
        else:
            reps = merge_shards(output / "shards", count)
            index = SearchIndex(self, CorpusIndex.build(reps, docids, self.engines, self.terms or None), corpus)
        index.save(output)
        return index

    def load_index(self, path: str | Path) -> SearchIndex:
        return SearchIndex.load(path, self)


def _engines(cfg, overrides: list[str], named_cfg) -> EngineSettings:
    """RETRIEVER.INDEX, with the database URLs the user named: in `overrides` (KEY VALUE pairs, the
    --uri flag), in their own config (`named_cfg`; None where the config came from a folder)."""
    named = [*_named_uris(overrides), *([named_cfg.RETRIEVER.INDEX.URI] if named_cfg is not None else [])]
    return dataclasses.replace(build_engine_settings(cfg), named_uris=tuple(u for u in named if u))


def _named_uris(overrides: list[str]) -> tuple[str, ...]:
    return tuple(overrides[i + 1] for i in range(0, len(overrides) - 1, 2) if overrides[i] == "RETRIEVER.INDEX.URI")


def is_interrupted(folder: Path) -> bool:
    """Whether `folder` holds an interrupted `index` of ours (our marker, no index.json yet), to continue."""
    folder = Path(folder)
    return kind_of(folder) == "index" and not (folder / INDEX_FILE).exists()


class SearchIndex:
    """A corpus indexed by one retriever; `search` encodes queries with it and ranks every document."""

    def __init__(self, retriever: HybridRetriever, corpus: CorpusIndex | VectorDatabase,
                 texts: dict[str, str] | None = None):
        self.retriever, self.corpus, self.texts = retriever, corpus, texts  # corpus: in memory or in a database
        self._rows: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.corpus.docids)

    def rows(self) -> dict[str, int]:
        """{docid: row} of the indexed documents (built once)."""
        if self._rows is None:
            self._rows = {d: i for i, d in enumerate(self.corpus.docids)}
        return self._rows

    def search(self, queries: str | list[str] | dict[str, str], k: int = 10, scorer: str | None = None):
        """Top `k` (docid, score) pairs, best first: one list for a string, a list of lists for a
        list, {qid: {docid: score}} (a run) for {qid: text}. `scorer` None: the retriever's default."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"search: k = {k!r}; give a whole number >= 1")
        scorer = scorer or self.retriever.default_scorer
        if scorer not in SCORERS:
            raise InputError(f"scorer {scorer!r}: choose one of {', '.join(SCORERS)}")
        as_run, single = isinstance(queries, dict), isinstance(queries, str)
        checked = check_texts([queries] if single else queries, "query", "search")
        qids, texts = list(checked), list(checked.values())
        q = self.retriever.encode_queries(texts).reps
        runs = self.corpus.search(q, qids, self.retriever.fusion, k, (scorer,) if scorer in SCORERS else None)
        run = _pick(runs, scorer)
        if as_run:
            return run
        hits = [list(run[qid].items()) for qid in qids]
        return hits[0] if single else hits

    def save(self, path: str | Path) -> None:
        """<path>/{sparse,dense}/, texts.jsonl, config.yaml and index.json (the model, its fusion), written into
        <path>.tmp... and moved in by renames; encoded shards in <path>/shards are kept."""
        path = Path(path).expanduser().resolve()
        claim(path, "index", True, resumable=is_interrupted)  # never into a folder that is not an index of ours
        mark(path, "index")
        tmp = path.with_name(path.name + ".index.tmp")
        written, where = self.corpus.save(tmp), self.corpus.describe()
        r = self.retriever
        meta = {"id": id_of(path), "model": r.source, "identity": r.identity, "overrides": r.overrides, "encoding": asdict(r.encoding),
                "fusion": asdict(r.fusion), "documents": len(self), "heads": list(self.corpus.heads),
                "default_scorer": r.default_scorer}
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
        (RETRIEVER.INDEX.ENGINE, URI, COLLECTION), without encoding again; `output`: the new index folder
        (docids, texts, config and the database's record). -> the new index."""
        if not isinstance(self.corpus, CorpusIndex):
            raise InputError(f"this index is already in {self.corpus.name}; push an in-memory index")
        if self.retriever.engines.database == "memory":
            raise InputError("push: set RETRIEVER.INDEX.ENGINE to qdrant or milvus (--engine)")
        output = Path(output).expanduser().resolve()
        database = open_database(self.retriever.engines, output, self.corpus.docids, index_id=mark(output, "index"))
        push(database, corpus_batches(self.corpus, self.retriever.engines.batch), self.retriever.engines.batch)
        index = SearchIndex(self.retriever, database, self.texts)
        index.save(output)
        return index

    def close(self) -> None:
        """Let go of a database connection (an embedded one locks its folder while open)."""
        self.corpus.close()

    @classmethod
    def load(cls, path: str | Path, retriever: HybridRetriever | None = None, overrides: list[str] = ()) -> SearchIndex:
        """An index saved by `save` (or `hybridpqa index`); the retriever is loaded from index.json
        unless given, with `overrides` (KEY VALUE pairs: RETRIEVER.INDEX.SPARSE seismic, ...)."""
        path = Path(path)
        meta_file, meta = path / INDEX_FILE, read_index_meta(path)
        if retriever is None:  # the folder's config and model are its own; database URLs the user names come
            config = path / CONFIG_FILE  # only from `overrides`
            retriever = HybridRetriever.from_pretrained(meta["model"], [*([] if config.is_file() else meta["overrides"]),
                                                                        *overrides], config if config.is_file() else None,
                                                        trust_config=False)
            retriever.engines = dataclasses.replace(retriever.engines, named_uris=_named_uris(list(overrides)))
        if json.loads(json.dumps(asdict(retriever.encoding))) != meta["encoding"]:
            raise InputError(f"{path}: indexed with other encoding settings ({meta['encoding']}) than this model's; "
                             "search it with the model it was built with")
        recorded = meta.get("identity")
        if recorded and retriever.identity and recorded != retriever.identity:
            raise InputError(f"{meta_file}: indexed with other weights than {retriever.source} has now (its sha256 "
                             "differs: retrained or replaced since); index the corpus again with this model")
        retriever.fusion = Fusion.from_dict(meta["fusion"], str(meta_file))
        texts = read_index_texts(path / TEXTS_FILE) if (path / TEXTS_FILE).is_file() else None
        if "database" in meta:
            docids = read_docids(path / DOCIDS_FILE, meta["documents"])
            return cls(retriever, open_database(retriever.engines, path, docids, meta["database"]), texts)
        return cls(retriever, CorpusIndex.load(path, retriever.engines), texts)


def _pick(scores: dict, scorer: str):
    if scorer not in SCORERS:
        raise InputError(f"scorer {scorer!r}: choose one of {', '.join(SCORERS)}")
    if scorer not in scores:
        given = ", ".join(scores)
        raise InputError(f"scorer {scorer!r}: " + (f"this model gives only {given}" if given else
                                                    "this model gives no scores for it") + "; choose another --scorer")
    return scores[scorer]
