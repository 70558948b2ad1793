"""What a corpus store is: where a corpus's vectors live (this process's memory, a vector database)
and how it is searched, written once for every store.

A store implements four primitives over its documents (row numbers, `docids[row]` their ids):

- `head_search(head, queries, k)`: one head's top k, (Q, k) rows (-1 where fewer) and scores;
- `exact_scores(q_reps, rows)`: (Q, C) rows -> {head: (Q, C)} exact scores from the stored vectors;
- `doc_vectors(rows)`: (sparse CSR or None, dense array or None) of some documents;
- `all_scores(q_reps)`: {head: (Q, N)} every document's scores (only an in-process store can).

On top of them `CorpusStore` gives every store the same search. Each head from its own top-k; the
hybrid (INDEX.HYBRID):

- "exact": fused over every document's two scores, so it is exact at any depth;
- "candidates": the union of each head's top k' (`candidates`) re-scored exactly by both heads and
  fused (`fuse_candidates`), a linear fusion's normalisation statistics taken from a fixed sample
  of `norm_sample` documents (`sample_rows`: seeded, the same in every store);
- "native": the engine's own fusion (a database's RRF or weighted ranker).

`hits(..., detail=True)` also gives each hit's raw head scores and its hybrid score split into the
dense and sparse parts (`Fusion.parts`), taken from the very scores the search fused, so a detailed
search never scores the corpus a second time.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from HybridPQA.heads import DENSE, HYBRID, SPARSE
from HybridPQA.heads import scorers as scorers_of
from HybridPQA.retrieval.kernels import top_k

Run = dict[str, dict[str, float]]
QUERY_CHUNK = 256  # queries scored against the whole corpus at once: (chunk, N) float32 per head


@dataclass
class Hits:
    """One scorer's ranked documents for some queries: (Q, depth) `rows` (-1: none) and `values`; with
    detail, `raw` {head: (Q, depth)} the hits' own head scores and `parts` (dense, sparse) (Q, depth)
    their shares of the hybrid score (hybrid only)."""

    rows: np.ndarray
    values: np.ndarray
    raw: dict = field(default_factory=dict)
    parts: tuple | None = None

    def run(self, qids: list[str], docids: list[str], into: Run | None = None) -> Run:
        run = {} if into is None else into
        for qid, cols, vals in zip(qids, self.rows, self.values.tolist()):
            run[qid] = {docids[c]: v for c, v in zip(cols, vals) if c >= 0 and v != float("-inf")}
        return run


class CorpusStore:
    """The search every store shares (see the module). A store sets `docids`, `heads`, `hybrid`,
    `candidates`, `norm_sample` and `name`, and implements the primitives."""

    name = "memory"
    docids: list[str]
    heads: tuple[str, ...]
    hybrid: str = "exact"
    candidates: int = 200
    norm_sample: int = 1000
    _sample: np.ndarray | None = None

    # -- the primitives ------------------------------------------------------------------------
    def head_search(self, head: str, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def exact_scores(self, q_reps: dict, rows: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def doc_vectors(self, rows: np.ndarray) -> tuple:
        raise NotImplementedError

    def all_scores(self, q_reps: dict) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{self.name} cannot score every document; INDEX.HYBRID exact is in-process only")

    def native(self, q_reps: dict, fusion, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(f"{self.name} has no fusion of its own; INDEX.HYBRID native is a database's")

    wide_heads = False  # each head's engine is asked for k' documents even for its own run (the in-process engines)

    def width(self, head: str) -> int:
        """k': how many documents `head` gives the candidate hybrid."""
        return self.candidates

    def exact_head(self, head: str) -> bool:
        """Whether this head's top-k is exact (then taken from every document's scores when they are there)."""
        return False

    def whole(self, scorers: tuple[str, ...]) -> bool:
        """Whether this search takes every document's exact scores (then each head's top-k comes from them)."""
        return self.hybrid == "exact" and HYBRID in scorers

    def ready(self, scorers: tuple[str, ...]) -> dict[str, float]:
        return {}  # a database builds its own indexes when documents are written

    def describe(self) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass  # nothing held open

    def __len__(self) -> int:
        return len(self.docids)

    # -- shared --------------------------------------------------------------------------------
    def sample_rows(self) -> np.ndarray:
        """The fixed random documents (rows, seeded) whose scores normalise the candidate hybrid."""
        if self._sample is None:
            size = min(self.norm_sample, len(self.docids))
            self._sample = np.sort(np.random.default_rng(0).choice(len(self.docids), size, replace=False))
        return self._sample

    def fusion_sample(self, fusion) -> np.ndarray | None:
        """The rows whose scores give a candidate hybrid's normalisation statistics: the fixed sample
        for a normalised linear fusion, None (the candidates themselves) otherwise."""
        linear = self.norm_sample and fusion.method == "linear" and fusion.norm != "none"
        return self.sample_rows() if linear else None

    def search(self, q_reps: dict, qids: list[str], fusion, depth: int,
               scorers: tuple[str, ...] | None = None) -> dict[str, Run]:
        """{scorer: run} of `scorers` (default: every one the store's heads allow), each query's top `depth`."""
        scorers = self.allowed(q_reps, scorers)
        runs: dict[str, Run] = {s: {} for s in scorers}
        for start in range(0, len(qids), QUERY_CHUNK):
            rows = slice(start, start + QUERY_CHUNK)
            found = self._chunk({h: v[rows] for h, v in q_reps.items()}, fusion, depth, scorers, False)
            for scorer, hits in found.items():
                hits.run(qids[rows], self.docids, runs[scorer])
        return runs

    def hits(self, q_reps: dict, fusion, depth: int, scorer: str, detail: bool = False) -> Hits:
        """One scorer's hits for a few queries (one chunk), with `detail` their head scores and split."""
        return self._chunk(q_reps, fusion, depth, self.allowed(q_reps, (scorer,)), detail)[scorer]

    def allowed(self, q_reps: dict, scorers: tuple[str, ...] | None) -> tuple[str, ...]:
        allowed = scorers_of([h for h in self.heads if h in q_reps])
        return tuple(s for s in (scorers or allowed) if s in allowed)

    def _chunk(self, q: dict, fusion, depth: int, scorers: tuple[str, ...], detail: bool) -> dict[str, Hits]:
        depth = min(depth, len(self.docids))
        heads = [h for h in self.heads if h in q]
        full = self.all_scores({h: q[h] for h in heads}) if self.whole(scorers) else None
        width = {h: min(max(depth, self.width(h)), len(self.docids)) for h in heads}
        union_of = HYBRID in scorers and self.hybrid == "candidates"
        found = {}
        for head in heads:
            if full is not None and self.exact_head(head):
                found[head] = Hits(*top_k(full[head], depth))
            elif head in scorers or union_of and self.wide_heads:
                found[head] = Hits(*self.head_search(head, q[head], width[head] if self.wide_heads else depth))
        out = {h: Hits(f.rows[:, :depth], f.values[:, :depth]) for h, f in found.items() if h in scorers}
        if HYBRID in scorers:
            if full is not None:
                dense, sparse = fusion.parts(full[DENSE], full[SPARSE])
                rows, values = top_k(dense + sparse, depth)
                out[HYBRID] = Hits(rows, values, parts=tuple(np.take_along_axis(p, rows, 1) for p in (dense, sparse)))
            elif self.hybrid == "native":
                out[HYBRID] = Hits(*self.native(q, fusion, depth))
            else:
                out[HYBRID] = self.fuse(q, fusion, depth, width, found)
        if detail:
            out = {s: self._detail(q, fusion, hits, full, s) for s, hits in out.items()}
        return out

    def fuse(self, q: dict, fusion, depth: int, width: dict[str, int], found: dict[str, Hits]) -> Hits:
        """The candidate hybrid: the union of each head's top `width[head]` (`found` holds them where the
        store searched its heads that wide) re-scored exactly and fused (an engine that can does it inside)."""
        candidates = union(*(found[h].rows if self.wide_heads else self.head_search(h, q[h], width[h])[0]
                             for h in (DENSE, SPARSE)))
        return fuse_candidates(fusion, candidates, self.fusion_sample(fusion),
                               lambda rows: self.exact_scores(q, rows), depth)

    def _detail(self, q: dict, fusion, hits: Hits, full: dict | None, scorer: str) -> Hits:
        rows = np.maximum(hits.rows, 0)
        raw = hits.raw or ({h: np.take_along_axis(s, rows, 1) for h, s in full.items()} if full is not None
                           else self.exact_scores(q, hits.rows) if hits.rows.size else {})
        parts = hits.parts
        if scorer == HYBRID and parts is None and self.hybrid != "native" and hits.rows.size:
            parts = self.split(q, hits.rows, fusion)
        return replace(hits, raw=raw, parts=parts if scorer == HYBRID else None)

    def split(self, q: dict, rows: np.ndarray, fusion) -> tuple[np.ndarray, np.ndarray]:
        """The hybrid parts of `rows` fused in an engine (which keeps its candidates): over the hits and
        the fixed sample (z-score: the sample's statistics; min-max: the sample's and the hits'; RRF:
        ranks among the hits)."""
        import torch

        sample = self.fusion_sample(fusion)
        sample = np.zeros(0, np.int64) if sample is None else sample
        both = np.concatenate([rows, np.broadcast_to(sample, (len(rows), sample.size))], axis=1)
        scores = self.exact_scores(q, both)
        columns = np.concatenate([np.broadcast_to(fusion.method == "rrf" or fusion.norm == "min-max", rows.shape),
                                  np.ones((len(rows), sample.size), bool)], axis=1) & (both >= 0)
        dense, sparse = fusion.parts(torch.from_numpy(scores[DENSE]), torch.from_numpy(scores[SPARSE]),
                                     torch.from_numpy(np.ascontiguousarray(columns)))
        return dense[:, :rows.shape[1]].numpy(), sparse[:, :rows.shape[1]].numpy()


def fuse_candidates(fusion, candidates: np.ndarray, sample: np.ndarray | None, exact, depth: int) -> Hits:
    """The candidate hybrid: (Q, C) candidate rows (-1: none), each query's union of the heads' top k',
    fused from their exact scores (`exact(rows) -> {head: (Q, C')}`) -> the top `depth`, with their
    raw scores and parts. A linear fusion's normalisation statistics come from the fixed `sample`
    rows (z-score: theirs alone; min-max: theirs and the candidates'), or from the union itself when
    `sample` is None."""
    import torch

    scored, statistics = candidates, candidates >= 0
    if sample is not None:
        wide = np.broadcast_to(sample, (len(candidates), sample.size))
        scored = np.concatenate([candidates, wide], axis=1)
        statistics = np.concatenate([statistics & (fusion.norm == "min-max"), wide >= 0], axis=1)
    scores, width = exact(scored), candidates.shape[1]
    dense, sparse = (p[:, :width] for p in fusion.parts(torch.from_numpy(scores[DENSE]),
                                                        torch.from_numpy(scores[SPARSE]),
                                                        torch.from_numpy(statistics)))
    fused = (dense + sparse).masked_fill(torch.from_numpy(candidates < 0), float("-inf")).numpy()
    order, values = top_k(fused, min(depth, width))
    take = lambda m: np.take_along_axis(np.asarray(m)[:, :width], order, 1)  # noqa: E731
    return Hits(take(candidates), values, {h: take(scores[h]) for h in (DENSE, SPARSE)},
                (take(dense.numpy()), take(sparse.numpy())))


def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Q, k1), (Q, k2) document rows (-1: none) -> (Q, C) each row's distinct rows ascending (so ties
    rank as over the whole corpus: by lower row), -1 padded at the end."""
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    both[:, 1:][both[:, 1:] == both[:, :-1]] = -1
    both = np.take_along_axis(both, np.argsort(both < 0, axis=1, kind="stable"), 1)
    return both[:, :int((both >= 0).sum(1).max(initial=1))]


def fused_runs(scores: dict[str, np.ndarray], fusion, depth: int | None, qids: list[str],
               columns: list[str] | list[list[str]], runs: dict[str, Run] | None = None) -> dict[str, Run]:
    """{head: (Q, N) scores} -> {scorer: run} with "hybrid" fused from dense and sparse when both are
    there; each query keeps its top `depth` (None: all). `columns`: the docids of the N columns,
    one list for all queries or one per query (a reranked split's own candidates)."""
    runs = {} if runs is None else runs
    if {DENSE, SPARSE} <= set(scores):
        scores = {HYBRID: fusion.fuse(scores[DENSE], scores[SPARSE]), **scores}
    for scorer, matrix in scores.items():
        run = runs.setdefault(scorer, {})
        index, values = top_k(matrix, matrix.shape[1] if depth is None else depth)
        for row, (cols, vals) in enumerate(zip(index, values.tolist())):
            names = columns[row] if columns and isinstance(columns[0], list) else columns
            run[qids[row]] = {names[c]: v for c, v in zip(cols, vals)}
    return runs
