"""Milvus as a corpus index (retrieval.databases): `MilvusClient("<dir>/milvus.db")` embedded (Milvus
Lite), or `MilvusClient(uri=..., token=$MILVUS_TOKEN)` of a `milvus-lite server`, a standalone
Milvus or a cluster; only the uri and the token change.

Schema: row (INT64 primary key), docid (VARCHAR), sparse (SPARSE_FLOAT_VECTOR, inverted index, inner
product), dense (FLOAT_VECTOR, inner product; FLAT, the index every Milvus has, Lite included;
a cluster may rebuild it as HNSW). The model's hybrid: each head's top k', the union's vectors
fetched and re-scored exactly here, fused with the model's fusion (`VectorDatabase.fuse`).
INDEX.HYBRID "native" is Milvus's `hybrid_search`: RRFRanker(RRF_K), or WeightedRanker(alpha,
1 - alpha, norm_score=True) (arctan-normalised) for a linear fusion; a candidate one route did not
return counts 0 there.

Milvus refuses a sparse vector without a non-zero weight: a document the model gave no sparse term is
stored with one weight of 1e-30 on term 0 (a special token no query weighs, and no score moves by
more than 1e-30 times a query weight), counted and logged.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.retrieval.databases.base import MARK, VectorDatabase
from HybridPQA.scoring import Fusion

DOCID_LENGTH = 512  # the VARCHAR docid's limit
EMPTY_WEIGHT = 1e-30


class _Unimplemented(logging.Filter):
    """Drops the traceback gRPC logs when a client probes a method Milvus Lite does not implement
    (AllocTimestamp, on every write): the call succeeds without it. Other server errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage() and "Method not implemented" not in str(
            record.exc_info[1] if record.exc_info else "")


def _client(uri: str, key: str | None):
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise InputError("RETRIEVER.INDEX.STORE = 'milvus' needs pymilvus and milvus-lite: "
                         "pip install 'HybridPQA[databases]'") from None
    if "://" not in uri:  # Milvus Lite's file: its folder must exist
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # it logs every refused call at ERROR before raising
    logging.getLogger("milvus_lite").setLevel(logging.WARNING)  # a line per server start and stop
    server = logging.getLogger("grpc._server")  # Milvus Lite's in-process server: pymilvus probes methods it lacks
    if not any(isinstance(f, _Unimplemented) for f in server.filters):
        server.addFilter(_Unimplemented())
    try:
        return MilvusClient(uri=uri, token=key or "")
    except Exception as err:  # noqa: BLE001 - pymilvus raises several kinds; all mean "cannot connect"
        raise InputError(f"{uri}: cannot open Milvus (an embedded .db file is served by one process at a time; {str(err).splitlines()[0][:120]}); start the server or check "
                         "RETRIEVER.INDEX.URI") from None


class MilvusDatabase(VectorDatabase):
    name = "milvus"
    collapsed_note = f"stored with one weight of {EMPTY_WEIGHT:g} on term 0 (Milvus refuses an empty sparse vector)"

    def __init__(self, uri, collection, docids, candidates=200, norm_sample=1000, hybrid="candidates", index_id="",
                 key=None):
        super().__init__(uri, collection, docids, candidates, norm_sample, hybrid, index_id)
        self.client = _client(self.uri, key)
        with self.errors("load"):
            if self.client.has_collection(self.collection):  # a saved one is released until loaded
                self.client.load_collection(self.collection)

    def create(self, vocab: int, dim: int) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("docid", DataType.VARCHAR, max_length=DOCID_LENGTH)
        schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field(DENSE, DataType.FLOAT_VECTOR, dim=dim)
        params = self.client.prepare_index_params()
        params.add_index(SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        params.add_index(DENSE, index_type="FLAT", metric_type="IP")
        self.client.create_collection(self.collection, schema=schema, index_params=params,  # marked as it is made
                                      properties={MARK: json.dumps({"id": self.index_id, "vocab": vocab, "dim": dim})})

    def exists(self) -> bool:
        return self.client.has_collection(self.collection)

    def mark(self) -> dict | None:
        value = self.client.describe_collection(self.collection).get("properties", {}).get(MARK)
        if value is None:
            return None
        try:
            mark = json.loads(value)
        except ValueError:
            return {}
        return mark if isinstance(mark, dict) else {"vocab": mark}  # before ids: the vocabulary size alone

    def delete(self) -> None:
        self.client.drop_collection(self.collection)

    def check_ids(self) -> None:
        long = next((d for d in self.docids if len(d.encode()) > DOCID_LENGTH), None)
        if long is not None:
            raise InputError(f"{self.uri}: document id {long[:40]!r}... is longer than Milvus's {DOCID_LENGTH}-byte "
                             "limit on it; shorten the corpus's ids")

    def upsert(self, rows, sparse, dense) -> None:
        sparse = sp.csr_matrix(sparse, dtype=np.float32)
        empty = np.diff(sparse.indptr) == 0
        if empty.any():
            sparse = sparse.tolil()
            sparse[np.flatnonzero(empty), 0] = EMPTY_WEIGHT
            sparse = sparse.tocsr()
        self.client.upsert(self.collection, [{"row": int(r), "docid": self.docids[r], SPARSE: sparse[i],
                                              DENSE: dense[i]} for i, r in enumerate(rows)])

    @staticmethod
    def _queries(head: str, reps) -> list:
        if head == SPARSE:
            reps = sp.csr_matrix(reps, dtype=np.float32)
            return [reps[i] for i in range(reps.shape[0])]
        return list(np.asarray(reps.float().numpy() if hasattr(reps, "float") else reps, np.float32))

    @staticmethod
    def _table(answers, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows, values = np.full((len(answers), k), -1, np.int64), np.full((len(answers), k), -np.inf, np.float32)
        for i, hits in enumerate(answers):
            for j, hit in enumerate(list(hits)[:k]):
                rows[i, j], values[i, j] = hit.id, hit.distance
        return rows, values

    def head_search(self, head, queries, k):
        queries = self._queries(head, queries)
        if head == SPARSE:  # an empty query vector is refused: it matches nothing
            empty = [q.nnz == 0 for q in queries]
            queries = [q if q.nnz else sp.csr_matrix(([EMPTY_WEIGHT], ([0], [0])), shape=q.shape) for q in queries]
        answers = self.client.search(self.collection, queries, anns_field=head, limit=k,
                                     search_params={"metric_type": "IP"})
        rows, values = self._table(answers, k)
        if head == SPARSE:
            rows[np.array(empty, bool)] = -1
        return rows, values

    def native(self, q_reps, fusion: Fusion, k: int):
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        width = max(k, min(self.candidates, len(self.docids)))
        ranker = RRFRanker(fusion.rrf_k) if fusion.method == "rrf" else \
            WeightedRanker(1 - fusion.alpha, fusion.alpha, norm_score=True)
        out = []
        for sq, dq in zip(self._queries(SPARSE, q_reps[SPARSE]), self._queries(DENSE, q_reps[DENSE])):
            requests = [AnnSearchRequest([sq], SPARSE, {"metric_type": "IP"}, width),
                        AnnSearchRequest([dq], DENSE, {"metric_type": "IP"}, width)]
            out.append(self.client.hybrid_search(self.collection, requests, ranker, limit=k)[0])
        return self._table(out, k)

    def vectors(self, rows):
        got = {int(g["row"]): g for g in self.client.get(self.collection, ids=[int(r) for r in rows],
                                                           output_fields=[SPARSE, DENSE])}
        missing = [int(r) for r in rows if int(r) not in got]
        if missing:
            raise InputError(f"{self.uri}: collection {self.collection!r} lacks documents {missing[:5]}; "
                             "it no longer matches the index folder: index again")
        vocab = int(self.mark()["vocab"])
        weights = [got[int(r)][SPARSE] for r in rows]
        indptr = np.cumsum([0] + [len(w) for w in weights])
        sparse = sp.csr_matrix((np.array([v for w in weights for v in w.values()], np.float32),
                                np.array([t for w in weights for t in w], np.int64), indptr), shape=(len(rows), vocab))
        sparse.data[sparse.data <= EMPTY_WEIGHT] = 0.0
        sparse.eliminate_zeros()
        sparse.sort_indices()
        return sparse, np.array([got[int(r)][DENSE] for r in rows], dtype=np.float32)

    def finish(self) -> None:
        self.client.flush(self.collection)  # sealed segments: 9x faster searches than growing ones (0.94 -> 0.10 s)

    def count(self) -> int:
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def close(self) -> None:
        self.client.close()
        if self.embedded:  # Milvus Lite serves a .db file from a thread that holds its lock until released
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)
