"""A corpus's sparse and dense indexes searched together. By default the hybrid is fused from the
scores of every document (`Fusion`), then cut to depth, so it is exact at any depth; with
approximate engines or INDEX.HYBRID "candidates" each head finds its own top k' and the union is
re-scored exactly by both heads and fused (retrieval.engines).

`fused_runs` is the one place where head scores become ranked runs; evaluation's rankers, the
Python API and `hybridpqa search` all go through it.

Saved as <dir>/sparse/ and <dir>/dense/ (retrieval.index), the layout `hybridpqa evaluate`
writes to <run>/index/<split>/, with approximate engines once built in <dir>/engines/.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic
from HybridPQA.heads import DENSE, HYBRID, SCORER_HEADS, SPARSE
from HybridPQA.heads import scorers as scorers_of
from HybridPQA.retrieval.engines import EngineSettings, build_engine
from HybridPQA.retrieval.index import DenseIndex, SparseIndex, top_k
from HybridPQA.scoring import Fusion

Run = dict[str, dict[str, float]]
INDEXES = {SPARSE: SparseIndex, DENSE: DenseIndex}  # the corpus index that serves each indexed head (heads.HEADS)
ENGINES = "engines"  # <index>/engines/: approximate engines built over it, kept
INDEX_FILE, TEXTS_FILE, CONFIG_FILE = "index.json", "texts.jsonl", "config.yaml"  # what makes an index searchable
DOCIDS_FILE = "docids.json"  # an index in a vector database: the ids of its rows
QUERY_CHUNK = 256  # queries scored against the whole corpus at once: (chunk, N) float32 per head


def fused_runs(scores: dict[str, np.ndarray], fusion: Fusion, depth: int | None, qids: list[str],
               columns: list[str] | list[list[str]], runs: dict[str, Run] | None = None) -> dict[str, Run]:
    """{head: (Q, N) scores} -> {scorer: run} with "hybrid" fused from dense and sparse when both are
    there; each query keeps its top `depth` (None: all). `columns`: the docids of the N columns,
    one list for all queries or one per query."""
    runs = {} if runs is None else runs
    if set(SCORER_HEADS[HYBRID]) <= set(scores):
        scores = {HYBRID: fusion.fuse(scores[DENSE], scores[SPARSE]), **scores}
    for scorer, matrix in scores.items():
        run = runs.setdefault(scorer, {})
        index, values = top_k(matrix, matrix.shape[1] if depth is None else depth)
        for row, (cols, vals) in enumerate(zip(index, values.tolist())):
            names = columns[row] if columns and isinstance(columns[0], list) else columns
            run[qids[row]] = {names[c]: v for c, v in zip(cols, vals)}
    return runs


class CorpusIndex:
    """{"sparse": SparseIndex, "dense": DenseIndex} over one list of docids, searched by the engines
    `settings` chooses: built on first use, and kept in <path>/engines/ once the index has a folder
    (`save`, `load`), so an approximate engine is built once per index and build parameters."""

    def __init__(self, indexes: dict[str, SparseIndex | DenseIndex], settings: EngineSettings | None = None,
                 path: Path | None = None):
        if not indexes:
            raise ValueError("a corpus index needs a sparse or a dense index")
        self.indexes, self.settings, self.engines, self.path = indexes, settings or EngineSettings(), {}, path
        self._sample: np.ndarray | None = None
        self.docids = next(iter(indexes.values())).docids
        if any(ix.docids != self.docids for ix in indexes.values()):
            raise InputError("the sparse and dense indexes name different documents; rebuild the index")

    @classmethod
    def build(cls, doc_reps: dict, docids: list[str], settings: EngineSettings | None = None,
              terms: list[str] | None = None):
        """Every head of `doc_reps` that a corpus index serves (INDEXES), sparse first."""
        return cls({head: kind.build(doc_reps[head], docids, terms) for head, kind in INDEXES.items()
                    if head in doc_reps}, settings)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.indexes)

    def engine(self, head: str):
        if head not in self.engines:
            keep = fingerprint = None
            if self.path is not None:
                keep, fingerprint = self.path / ENGINES, _fingerprint(self.path / head)
            self.engines[head] = build_engine(head, self.indexes[head], self.settings, keep, fingerprint or "")
        return self.engines[head]

    def engine_heads(self, scorers: tuple[str, ...]) -> list[str]:
        """The heads whose engines searching `scorers` asks (none when every run is exact)."""
        if self.settings.exact:
            return []
        return [h for h in self.indexes if h in scorers or HYBRID in scorers and self.settings.hybrid == "candidates"]

    def ready(self, scorers: tuple[str, ...]) -> dict[str, float]:
        """Build (or load) the engines `scorers` need now, so search times only searching: {head: seconds}."""
        seconds = {}
        for head in self.engine_heads(scorers):
            started = time.perf_counter()
            self.engine(head)
            seconds[head] = round(time.perf_counter() - started, 3)
        return seconds

    def sample(self) -> np.ndarray:
        """The fixed random documents (rows, seeded) whose scores normalise the candidate hybrid."""
        if self._sample is None:
            size = min(self.settings.norm_sample, len(self.docids))
            self._sample = np.sort(np.random.default_rng(0).choice(len(self.docids), size, replace=False))
        return self._sample

    def scores(self, q_reps: dict, rows: slice | None = None) -> dict[str, np.ndarray]:
        """{head: (Q, N)} exact scores of queries `rows` of `q_reps` against every document."""
        rows = rows or slice(None)
        return {h: self.indexes[h].scores(q_reps[h][rows]) for h in self.indexes if h in q_reps}

    def exact_scores(self, q_reps: dict, rows: np.ndarray) -> dict[str, np.ndarray]:
        """(Q, C) document rows (-1: none) -> {head: (Q, C)} their exact scores (0 at -1)."""
        return {h: self.indexes[h].candidate_scores(q_reps[h], rows) for h in self.indexes if h in q_reps}

    def doc_vectors(self, rows: np.ndarray) -> tuple:
        """(sparse CSR or None, dense array or None) of the documents at `rows`."""
        sparse, dense = self.indexes.get(SPARSE), self.indexes.get(DENSE)
        return (sparse.by_doc[rows] if sparse is not None else None,
                np.asarray(dense.vectors[rows]) if dense is not None else None)

    def statistics_rows(self, fusion: Fusion) -> np.ndarray | None:
        """The documents whose scores normalise a query's hybrid: None for every document (the exact
        hybrid), else the fixed sample (none for RRF or no normalisation)."""
        if self.settings.hybrid == "exact":
            return None
        linear = self.settings.norm_sample and fusion.method == "linear" and fusion.norm != "none"
        return self.sample() if linear else np.zeros(0, np.int64)

    def search(self, q_reps: dict, qids: list[str], fusion: Fusion, depth: int,
               scorers: tuple[str, ...] | None = None) -> dict[str, Run]:
        """{scorer: run} of `scorers` (default: every scorer the indexes allow: hybrid, dense, sparse),
        each query's top `depth`."""
        heads = [h for h in self.indexes if h in q_reps]
        allowed = scorers_of(heads)
        scorers = tuple(s for s in (scorers or allowed) if s in allowed)
        depth = min(depth, len(self.docids))
        runs: dict[str, Run] = {}
        for start in range(0, len(qids), QUERY_CHUNK):
            rows = slice(start, start + QUERY_CHUNK)
            if self.settings.exact:
                scores = self.scores({h: q_reps[h] for h in heads if h in scorers or HYBRID in scorers}, rows)
                fused_runs(scores, fusion, depth, qids[rows], self.docids, runs)
            else:
                self._search_engines(q_reps, qids[rows], rows, fusion, depth, scorers, runs)
        return {s: runs[s] for s in scorers}

    def _search_engines(self, q_reps, qids, rows: slice, fusion: Fusion, depth: int, scorers, runs) -> None:
        """One chunk of queries through the engines: each head its top max(depth, k'); the hybrid fused
        over every document (HYBRID exact) or over the union of the heads' candidates, re-scored exactly."""
        width = min(max(depth, self.settings.candidates), len(self.docids))
        hits = {h: self.engine(h).search(q_reps[h][rows], width) for h in self.engine_heads(scorers)}
        for head in set(scorers) & set(hits):
            add_hits(runs.setdefault(head, {}), qids, hits[head][0][:, :depth], hits[head][1][:, :depth], self.docids)
        if HYBRID not in scorers:
            return
        if self.settings.hybrid == "exact":
            fused_runs(self.scores(q_reps, rows), fusion, depth, qids, self.docids, runs)
            return
        sample = self.sample() if self.settings.norm_sample and fusion.method == "linear" and fusion.norm != "none" \
            else None
        exact = lambda rows_: {h: self.indexes[h].candidate_scores(q_reps[h][rows], rows_) for h in (DENSE, SPARSE)}  # noqa: E731
        found, values = fuse_candidates(fusion, union(hits[DENSE][0], hits[SPARSE][0]), sample, exact, depth)
        add_hits(runs.setdefault(HYBRID, {}), qids, found, values, self.docids)

    def save(self, path: Path) -> list[str]:
        """The head indexes into `path`/<head>/ -> the names written there."""
        for head, index in self.indexes.items():
            index.save(Path(path) / head)
        return list(self.indexes)

    def describe(self) -> dict:
        """Where the vectors live and how the hybrid is found (as VectorDatabase.describe)."""
        return {"engine": "memory", "hybrid": self.settings.hybrid, "documents": len(self.docids)}

    def close(self) -> None:
        pass  # nothing held open

    @classmethod
    def load(cls, path: Path, settings: EngineSettings | None = None) -> CorpusIndex:
        path = Path(path)
        indexes = {head: kind.load(path / head) for head, kind in INDEXES.items() if (path / head / "meta.json").is_file()}
        if not indexes:
            raise InputError(f"{path}: no index here (no sparse/meta.json or dense/meta.json); build one with "
                             "`hybridpqa index`")
        return cls(indexes, settings, path)


def write_index_files(folder: Path, meta: dict, texts: dict[str, str] | None, config: str | None) -> None:
    """Beside the head indexes: texts.jsonl (what search prints), config.yaml (the model's merged config,
    so search rebuilds the same model) and index.json, last: the model, its encoding and fusion, the
    heads, the documents and the default scorer."""
    folder = Path(folder)
    with (folder / TEXTS_FILE).open("w", encoding="utf-8") as handle:
        for docid, text in (texts or {}).items():
            handle.write(json.dumps({"id": docid, "text": text}) + "\n")
    if config is not None:
        write_atomic(folder / CONFIG_FILE, config)
    write_atomic(folder / INDEX_FILE, json.dumps(meta, indent=2))


def read_index_texts(file: Path) -> dict[str, str]:
    """texts.jsonl of an index folder: {id: text}, each line checked (a truncated or edited file is a
    one-line error naming its line)."""
    texts = {}
    with Path(file).open(encoding="utf-8", errors="strict") as handle:
        try:
            for number, raw in enumerate(handle, 1):
                try:
                    record = json.loads(raw)
                except ValueError:
                    record = None
                if not (isinstance(record, dict) and isinstance(record.get("id"), str)
                        and isinstance(record.get("text"), str)):
                    raise InputError(f"{file}:{number}: not an {{\"id\": ..., \"text\": ...}} line (truncated or "
                                     "edited); index the corpus again")
                texts[record["id"]] = record["text"]
        except UnicodeDecodeError:
            raise InputError(f"{file}: not UTF-8 text; index the corpus again") from None
    return texts


def read_index_meta(path: Path) -> dict:
    """index.json of a searchable index folder, checked; a one-line error naming the file."""
    meta_file = Path(path) / INDEX_FILE
    if not meta_file.is_file():
        raise InputError(f"{path}: not a search index (no {INDEX_FILE}); build one with `hybridpqa index`")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{meta_file}: unreadable ({err.__class__.__name__}); rebuild the index") from None
    missing = [k for k in ("model", "encoding", "fusion", "heads", "documents") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise InputError(f"{meta_file}: not a HybridPQA index description (no {', '.join(missing)}); rebuild the index")
    return meta


def read_docids(file: Path, count: int) -> list[str]:
    """docids.json of an index in a vector database: the ids of its `count` rows, checked."""
    try:
        docids = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{file}: unreadable ({err.__class__.__name__}); index the corpus again") from None
    if not isinstance(docids, list) or len(docids) != count:
        raise InputError(f"{file}: not the {count} document ids index.json counts; index the corpus again")
    return docids


def is_index(folder: Path) -> bool:
    """Whether `folder` holds a searchable index of ours: an index.json that parses with our keys."""
    try:
        read_index_meta(folder)
    except InputError:
        return False
    return True


def open_index(path: Path, model: str, encoding: dict, docids: list[str], settings: EngineSettings | None = None
               ) -> CorpusIndex:
    """A saved index (`hybridpqa index`, or a run's index/<split>/) in place of encoding a corpus again,
    checked to be of this `model`, with its `encoding` settings, over these `docids` in this order."""
    meta = read_index_meta(path)
    if not _same_model(meta["model"], model):
        raise InputError(f"{path}: indexed with {meta['model']}, not {model}; give an index of this model")
    if meta["encoding"] != json.loads(json.dumps(encoding)):
        raise InputError(f"{path}: indexed with other encoding settings ({meta['encoding']}) than this model's "
                         f"({encoding}); index again with these settings")
    corpus = CorpusIndex.load(path, settings)
    if corpus.docids != docids:
        same = "the same documents in another order" if set(corpus.docids) == set(docids) else \
            f"{len(set(corpus.docids) ^ set(docids))} documents differ"
        raise InputError(f"{path}: indexes {len(corpus.docids)} documents, this corpus has {len(docids)} ({same}); "
                         "give the index of this corpus")
    return corpus


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.resolve() == pb.resolve() if pa.exists() and pb.exists() else a == b


def _fingerprint(folder: Path) -> str:
    """What names one saved head index: its meta.json (docids, shape, lengths) and its arrays' sizes."""
    digest = hashlib.sha256((folder / "meta.json").read_bytes())
    for file in sorted(folder.glob("*.npy")):
        digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return digest.hexdigest()


def fuse_candidates(fusion: Fusion, candidates: np.ndarray, sample: np.ndarray | None, exact, depth: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The candidate hybrid: (Q, C) candidate rows (-1: none), each query's union of the heads' top k',
    fused from their exact scores (`exact(rows) -> {head: (Q, C')}`) -> (Q, depth) rows and scores.
    A linear fusion's normalisation statistics come from the fixed `sample` rows (z-score: theirs
    alone; min-max: theirs and the candidates'), or from the union itself when `sample` is None."""
    scored, statistics = candidates, candidates >= 0
    if sample is not None:
        wide = np.broadcast_to(sample, (len(candidates), sample.size))
        scored = np.concatenate([candidates, wide], axis=1)
        statistics = np.concatenate([statistics & (fusion.norm == "min-max"), wide >= 0], axis=1)
    scores = exact(scored)
    fused = fusion.fuse(torch.from_numpy(scores[DENSE]), torch.from_numpy(scores[SPARSE]),
                        torch.from_numpy(statistics))[:, :candidates.shape[1]]
    fused = fused.masked_fill(torch.from_numpy(candidates < 0), float("-inf")).numpy()
    order, values = top_k(fused, min(depth, candidates.shape[1]))
    return np.take_along_axis(candidates, order, 1), values


def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Q, k1), (Q, k2) document rows (-1: none) -> (Q, C) each row's distinct rows ascending (so ties
    rank as over the whole corpus: by lower row), -1 padded at the end."""
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    both[:, 1:][both[:, 1:] == both[:, :-1]] = -1
    both = np.take_along_axis(both, np.argsort(both < 0, axis=1, kind="stable"), 1)
    return both[:, :int((both >= 0).sum(1).max(initial=1))]


def add_hits(run: Run, qids: list[str], rows: np.ndarray, values: np.ndarray, docids: list[str]) -> None:
    for qid, cols, vals in zip(qids, rows, values.tolist()):
        run[qid] = {docids[c]: v for c, v in zip(cols, vals) if c >= 0 and v != float("-inf")}
