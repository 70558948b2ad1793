"""Qdrant as a corpus index (retrieval.databases): embedded, Qdrant's Rust engine in this process
(Qdrant Edge, databases.qdrant_edge; an index folder written by qdrant-client's pure-Python local mode
keeps that mode), or `QdrantClient(url=..., api_key=$QDRANT_API_KEY)` of a server or a cluster; the
same requests for both.

Points: id = row number, payload {"docid"}, vectors named by head ("dense": dot product, "sparse"). The hybrid
runs inside the engine, in one request per query: a base of the sparse top k' and the dense top k'
(two prefetches), re-scored exactly by each head (two prefetches over that union, exact search:
filtered HNSW over a few hundred ids can return too few), then fused by

- linear, none or z-score: a `FormulaQuery`, alpha / sd_dense * $score[1] + (1 - alpha) / sd_sparse *
  $score[0] + c, with each query's mean and std from the fixed sample (read once, scored here) and
  a sparse score of 0 where a candidate shares no term with the query (`defaults`);
- rrf: an `RrfQuery` (k = the model's RRF_K) over the two re-scored lists: ranks within the union;
- linear min-max: not expressible in one request (the formula has no max over the candidates), so
  the union's scores come back and are fused here (`VectorDatabase.fuse`).

INDEX.HYBRID "native" is Qdrant's own RRF over the two heads' top k' (k = RRF_K, never the default 2).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.retrieval.databases.base import MARK, VectorDatabase, sparse_rows
from HybridPQA.retrieval.databases.qdrant_edge import EdgeClient
from HybridPQA.retrieval.kernels import dense_dots, sparse_dots
from HybridPQA.retrieval.store import Hits
from HybridPQA.scoring import Fusion

log = logging.getLogger(__name__)
LOCAL_MODE = "meta.json"  # what qdrant-client's local mode writes at the top of its folder


def _client(uri: str, key: str | None):
    try:
        from qdrant_client import QdrantClient
    except ImportError:
        raise InputError("RETRIEVER.INDEX.STORE = 'qdrant' needs qdrant-client: pip install 'HybridPQA[databases]'") from None
    if "://" in uri:
        try:
            return QdrantClient(url=uri, api_key=key)
        except Exception as err:  # noqa: BLE001 - a malformed URL, a refused option
            raise InputError(f"{uri}: not a Qdrant URL qdrant-client accepts ({str(err)[:120]}); "
                             "give http(s)://HOST:PORT") from None
    if not (Path(uri) / LOCAL_MODE).is_file():  # not a folder of the local mode: Qdrant Edge
        try:
            return EdgeClient(uri)
        except InputError as err:
            log.warning("%s; using qdrant-client's local mode (pure Python, ~100x slower searches)", err)
    try:
        return QdrantClient(path=uri)
    except (RuntimeError, BlockingIOError) as err:  # local mode locks its folder
        raise InputError(f"{uri}: the embedded Qdrant is open in another process ({str(err)[:80]}); "
                         "serve it from one process, or run a Qdrant server and index into its url") from None


class QdrantDatabase(VectorDatabase):
    name = "qdrant"
    collapsed_note = "stored with an empty sparse vector: they score 0 on the sparse head"

    def __init__(self, uri, collection, docids, candidates=200, norm_sample=1000, hybrid="candidates", index_id="",
                 key=None):
        super().__init__(uri, collection, docids, candidates, norm_sample, hybrid, index_id)
        from qdrant_client import models

        self.models, self.client = models, _client(self.uri, key)

    def create(self, vocab: int, dim: int) -> None:
        m = self.models
        self.client.create_collection(self.collection, vectors_config={DENSE: m.VectorParams(size=dim, distance=m.Distance.DOT)},
                                      sparse_vectors_config={SPARSE: m.SparseVectorParams()},
                                      metadata={MARK: {"id": self.index_id, "vocab": vocab, "dim": dim}})

    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def mark(self) -> dict | None:
        return (self.client.get_collection(self.collection).config.metadata or {}).get(MARK)

    def delete(self) -> None:
        self.client.delete_collection(self.collection)

    def upsert(self, rows, sparse, dense) -> None:
        m = self.models
        points = [m.PointStruct(id=int(r), payload={"docid": self.docids[r]},
                                vector={DENSE: d.tolist(), SPARSE: m.SparseVector(indices=i.tolist(), values=w.tolist())})
                  for r, (i, w), d in zip(rows, sparse_rows(sparse), dense)]
        self.client.upsert(self.collection, points, wait=True)

    def _query(self, head: str, reps):
        if head == SPARSE:
            return [self.models.SparseVector(indices=i.tolist(), values=w.tolist()) for i, w in sparse_rows(reps)]
        return [row.tolist() for row in np.asarray(reps.float().numpy() if hasattr(reps, "float") else reps, np.float32)]

    def _batch(self, requests) -> tuple[np.ndarray, np.ndarray]:
        answers = self.client.query_batch_points(self.collection, requests)
        width = max((r.limit for r in requests), default=0)
        rows, values = np.full((len(requests), width), -1, np.int64), np.full((len(requests), width), -np.inf, np.float32)
        for i, answer in enumerate(answers):
            for j, point in enumerate(answer.points):
                rows[i, j], values[i, j] = point.id, point.score
        return rows, values

    def head_search(self, head, queries, k):
        m = self.models
        return self._batch([m.QueryRequest(query=q, using=head, limit=k)
                            for q in self._query(head, queries)])

    def _base(self, sparse_q, dense_q, k: int) -> list:
        m = self.models
        return [m.Prefetch(query=sparse_q, using=SPARSE, limit=k), m.Prefetch(query=dense_q, using=DENSE, limit=k)]

    def _rescored(self, base, sparse_q, dense_q, k: int) -> list:
        m, exact = self.models, self.models.SearchParams(exact=True)
        return [m.Prefetch(prefetch=base, query=sparse_q, using=SPARSE, limit=2 * k, params=exact),
                m.Prefetch(prefetch=base, query=dense_q, using=DENSE, limit=2 * k, params=exact)]

    def fuse(self, q_reps, fusion: Fusion, depth: int, width: dict, found: dict) -> Hits:
        if fusion.method == "linear" and fusion.norm == "min-max":
            return super().fuse(q_reps, fusion, depth, width, found)
        m, k = self.models, max(width.values())
        shift = self._shift(q_reps, fusion)
        requests = []
        for i, (sq, dq) in enumerate(zip(self._query(SPARSE, q_reps[SPARSE]), self._query(DENSE, q_reps[DENSE]))):
            prefetch = self._rescored(self._base(sq, dq, k), sq, dq, k)
            if fusion.method == "rrf":
                query = m.RrfQuery(rrf=m.Rrf(k=fusion.rrf_k))
            else:
                (wd, ws), c = shift[i]
                query = m.FormulaQuery(formula=m.SumExpression(sum=[m.MultExpression(mult=[ws, "$score[0]"]),
                                                                    m.MultExpression(mult=[wd, "$score[1]"]), c]),
                                       defaults={"$score[0]": 0.0, "$score[1]": 0.0})
            requests.append(m.QueryRequest(prefetch=prefetch, query=query, limit=depth))
        return Hits(*self._batch(requests))

    def _shift(self, q_reps, fusion: Fusion) -> list:
        """Per query ((w_dense, w_sparse), constant) of the linear fusion as one weighted sum."""
        q = len(q_reps[DENSE])
        if fusion.method != "linear" or fusion.norm == "none" or not self.norm_sample:
            if fusion.method == "linear" and fusion.norm == "z-score":  # statistics of the union itself
                raise InputError("RETRIEVER.INDEX.NORM_SAMPLE 0 with z-score fusion: Qdrant's formula needs the "
                                 "statistics before the query; give a sample (e.g. 1000)")
            return [((fusion.alpha, 1 - fusion.alpha), 0.0)] * q
        rows, sparse, dense = self.sample()
        every = np.broadcast_to(np.arange(len(rows)), (q, len(rows)))
        s, d = sparse_dots(q_reps[SPARSE], sparse, every), dense_dots(q_reps[DENSE], dense, every)
        sd_s, sd_d = s.std(1).clip(min=1e-9), d.std(1).clip(min=1e-9)
        ws, wd = (1 - fusion.alpha) / sd_s, fusion.alpha / sd_d
        constant = -(ws * s.mean(1) + wd * d.mean(1))
        return [((float(a), float(b)), float(c)) for a, b, c in zip(wd, ws, constant)]

    def native(self, q_reps, fusion: Fusion, k: int):
        m, width = self.models, max(k, min(self.candidates, len(self.docids)))
        return self._batch([m.QueryRequest(prefetch=self._base(sq, dq, width), query=m.RrfQuery(rrf=m.Rrf(k=fusion.rrf_k)),
                                           limit=k)
                            for sq, dq in zip(self._query(SPARSE, q_reps[SPARSE]), self._query(DENSE, q_reps[DENSE]))])

    def vectors(self, rows):
        points = {p.id: p for p in self.client.retrieve(self.collection, [int(r) for r in rows], with_vectors=True)}
        missing = [int(r) for r in rows if int(r) not in points]
        if missing:
            raise InputError(f"{self.uri}: collection {self.collection!r} lacks documents {missing[:5]}; "
                             "it no longer matches the index folder: index again")
        vocab = self.mark()["vocab"]
        sparse = [points[int(r)].vector[SPARSE] for r in rows]
        indptr = np.cumsum([0] + [len(v.indices) for v in sparse])
        sparse = sp.csr_matrix((np.array([w for v in sparse for w in v.values], np.float32),
                                np.array([t for v in sparse for t in v.indices], np.int64), indptr), shape=(len(rows), vocab))
        dense = np.array([points[int(r)].vector[DENSE] for r in rows], dtype=np.float32)
        return sparse.tocsr(), dense

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def finish(self) -> None:
        if isinstance(self.client, EdgeClient):  # the embedded engine builds its indexes now
            self.client.optimize(self.collection)

    def close(self) -> None:
        self.client.close()
