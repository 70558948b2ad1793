"""A corpus's sparse and dense indexes searched together: the hybrid is fused from the scores of
every document (`Fusion`), then cut to depth, so it is exact at any depth.

`fused_runs` is the one place where head scores become ranked runs; evaluation's rankers, the
Python API and `hybridpqa search` all go through it.

Saved as <dir>/sparse/ and <dir>/dense/ (retrieval.index), the layout `hybridpqa evaluate`
writes to <run>/index/<split>/.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from HybridPQA.errors import InputError
from HybridPQA.retrieval.index import DenseIndex, SparseIndex, top_k
from HybridPQA.scoring import Fusion

Run = dict[str, dict[str, float]]
QUERY_CHUNK = 256  # queries scored against the whole corpus at once: (chunk, N) float32 per head


def fused_runs(scores: dict[str, np.ndarray], fusion: Fusion, depth: int | None, qids: list[str],
               columns: list[str] | list[list[str]], runs: dict[str, Run] | None = None) -> dict[str, Run]:
    """{head: (Q, N) scores} -> {scorer: run} with "hybrid" fused from dense and sparse when both are
    there; each query keeps its top `depth` (None: all). `columns`: the docids of the N columns,
    one list for all queries or one per query."""
    runs = {} if runs is None else runs
    if {"dense", "sparse"} <= set(scores):
        scores = {"hybrid": fusion.fuse(scores["dense"], scores["sparse"]), **scores}
    for scorer, matrix in scores.items():
        run = runs.setdefault(scorer, {})
        index, values = top_k(matrix, matrix.shape[1] if depth is None else depth)
        for row, (cols, vals) in enumerate(zip(index, values.tolist())):
            names = columns[row] if columns and isinstance(columns[0], list) else columns
            run[qids[row]] = {names[c]: v for c, v in zip(cols, vals)}
    return runs


class CorpusIndex:
    """{"sparse": SparseIndex, "dense": DenseIndex} over one list of docids."""

    def __init__(self, indexes: dict[str, SparseIndex | DenseIndex]):
        if not indexes:
            raise ValueError("a corpus index needs a sparse or a dense index")
        self.indexes = indexes
        self.docids = next(iter(indexes.values())).docids
        if any(ix.docids != self.docids for ix in indexes.values()):
            raise InputError("the sparse and dense indexes name different documents; rebuild the index")

    @classmethod
    def build(cls, doc_reps: dict, docids: list[str], dense_backend: str = "torch", terms: list[str] | None = None):
        builders = {"sparse": lambda reps: SparseIndex.build(reps, docids, terms),
                    "dense": lambda reps: DenseIndex.build(reps, docids, dense_backend)}
        return cls({head: build(doc_reps[head]) for head, build in builders.items() if head in doc_reps})

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.indexes)

    def scores(self, q_reps: dict, rows: slice | None = None) -> dict[str, np.ndarray]:
        """{head: (Q, N)} exact scores of queries `rows` of `q_reps` against every document."""
        rows = rows or slice(None)
        return {h: self.indexes[h].scores(q_reps[h][rows]) for h in self.indexes if h in q_reps}

    def search(self, q_reps: dict, qids: list[str], fusion: Fusion, depth: int) -> dict[str, Run]:
        """{scorer: run} of every scorer the indexes allow (hybrid, dense, sparse), top `depth`."""
        runs: dict[str, Run] = {}
        for start in range(0, len(qids), QUERY_CHUNK):
            rows = slice(start, start + QUERY_CHUNK)
            fused_runs(self.scores(q_reps, rows), fusion, min(depth, len(self.docids)), qids[rows], self.docids, runs)
        return runs

    def save(self, path: Path) -> None:
        for head, index in self.indexes.items():
            index.save(Path(path) / head)

    @classmethod
    def load(cls, path: Path, dense_backend: str = "torch") -> CorpusIndex:
        path = Path(path)
        indexes = {}
        if (path / "sparse" / "meta.json").is_file():
            indexes["sparse"] = SparseIndex.load(path / "sparse")
        if (path / "dense" / "meta.json").is_file():
            indexes["dense"] = DenseIndex.load(path / "dense", backend=dense_backend)
        if not indexes:
            raise InputError(f"{path}: no index here (no sparse/meta.json or dense/meta.json); build one with "
                             "`hybridpqa index`")
        return cls(indexes)
