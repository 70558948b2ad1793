"""The embedded Qdrant: Qdrant's own Rust engine in this process (`qdrant-edge-py`, Qdrant Edge), behind
the part of `QdrantClient`'s interface the adapter (databases.qdrant) calls, so the embedded store and
a server take the same requests, built once with qdrant_client's models and translated here:
nearest-vector queries, prefetches, exact search parameters, the hybrid's `FormulaQuery` (sums and
products of constants and `$score[i]`) and `RrfQuery`.

A collection is a shard folder, <root>/<collection>/shard, with the collection's metadata (HybridPQA's
mark) in <root>/<collection>/collection.json beside it; the shard's indexes (HNSW, sparse inverted
index) are built by `optimize` once the documents are written (`finish`).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

from HybridPQA.errors import InputError

SHARD, METADATA = "shard", "collection.json"


def _edge():
    try:
        import qdrant_edge
    except ImportError:
        raise InputError("the embedded Qdrant needs qdrant-edge-py: pip install qdrant-edge-py (or index into a "
                         "Qdrant server with --uri)") from None
    return qdrant_edge


class EdgeClient:
    """Collections under `root`, each one Qdrant Edge shard, answering QdrantClient's calls."""

    def __init__(self, root: str):
        self.edge, self.root, self.shards = _edge(), Path(root), {}

    def _folder(self, collection: str) -> Path:
        return self.root / collection

    def _shard(self, collection: str):
        if collection not in self.shards:
            self.shards[collection] = self.edge.EdgeShard.load(str(self._folder(collection) / SHARD))
        return self.shards[collection]

    # -- collections ---------------------------------------------------------------------------------
    def create_collection(self, collection: str, vectors_config: dict, sparse_vectors_config: dict,
                          metadata: dict) -> None:
        e, folder = self.edge, self._folder(collection)
        vectors = {name: e.EdgeVectorParams(size=p.size, distance=e.Distance.Dot) for name, p in vectors_config.items()}
        sparse = {name: e.EdgeSparseVectorParams() for name in sparse_vectors_config}
        folder.mkdir(parents=True, exist_ok=True)
        self.shards[collection] = e.EdgeShard.create(str(folder / SHARD), e.EdgeConfig(vectors=vectors, sparse_vectors=sparse))
        tmp = folder / f".{METADATA}.{os.getpid()}"
        tmp.write_text(json.dumps(metadata), encoding="utf-8")
        tmp.replace(folder / METADATA)

    def collection_exists(self, collection: str) -> bool:
        return (self._folder(collection) / METADATA).is_file() and (self._folder(collection) / SHARD).is_dir()

    def get_collection(self, collection: str):
        try:
            metadata = json.loads((self._folder(collection) / METADATA).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"{self._folder(collection) / METADATA}: unreadable ({err.__class__.__name__}); "
                             "index again with --overwrite") from None
        return SimpleNamespace(config=SimpleNamespace(metadata=metadata if isinstance(metadata, dict) else None))

    def delete_collection(self, collection: str) -> None:
        """Remove a collection this client made: only a real folder whose collection.json parses (the
        adapter has checked the mark inside it is this index's before asking)."""
        shard, folder = self.shards.pop(collection, None), self._folder(collection)
        if shard is not None:
            shard.close()
        try:
            ours = isinstance(json.loads((folder / METADATA).read_text(encoding="utf-8")), dict)
        except (OSError, ValueError):
            ours = False
        if not ours or folder.is_symlink():
            raise InputError(f"{folder}: not a collection HybridPQA wrote (no readable {METADATA}); left alone")
        shutil.rmtree(folder)

    # -- points --------------------------------------------------------------------------------------
    def upsert(self, collection: str, points: list, wait: bool = True) -> None:
        e = self.edge
        edge_points = [e.Point(p.id, {name: self._vector(v) for name, v in p.vector.items()}, p.payload) for p in points]
        self._shard(collection).update(e.UpdateOperation.upsert_points(edge_points))

    def optimize(self, collection: str) -> None:
        """Build the shard's indexes and write it to disk (after the last upsert)."""
        shard = self._shard(collection)
        shard.optimize()
        shard.flush()

    def retrieve(self, collection: str, ids: list[int], with_vectors: bool = False):
        found = self._shard(collection).retrieve(ids, with_payload=True, with_vector=with_vectors)
        return [SimpleNamespace(id=r.id, payload=r.payload, vector={name: _from_edge(v) for name, v in (r.vector or {}).items()})
                for r in found]

    def count(self, collection: str, exact: bool = True):
        return SimpleNamespace(count=self._shard(collection).count(self.edge.CountRequest(exact=exact)))

    def query_batch_points(self, collection: str, requests: list) -> list:
        e = self.edge
        batch = e.QueryBatchRequest([e.QueryRequest(limit=r.limit, query=self._query(r.query, r.using),
                                                    prefetches=self._prefetches(r.prefetch), params=self._params(r.params))
                                     for r in requests])
        return [SimpleNamespace(points=points) for points in self._shard(collection).query_batch(batch)]

    def close(self) -> None:
        for shard in self.shards.values():
            shard.close()
        self.shards = {}

    # -- qdrant_client models -> Qdrant Edge ------------------------------------------------------------
    def _vector(self, vector):
        if hasattr(vector, "indices"):
            return self.edge.SparseVector([int(i) for i in vector.indices], [float(w) for w in vector.values])
        return [float(x) for x in vector]

    def _prefetches(self, prefetch):
        if prefetch is None:
            return None
        return [self.edge.Prefetch(limit=p.limit, query=self._query(p.query, p.using), prefetches=self._prefetches(p.prefetch),
                                   params=self._params(p.params))
                for p in (prefetch if isinstance(prefetch, list) else [prefetch])]

    def _params(self, params):
        return None if params is None else self.edge.SearchParams(exact=bool(params.exact), hnsw_ef=params.hnsw_ef)

    def _query(self, query, using: str | None):
        e = self.edge
        if query is None:
            return None
        if hasattr(query, "formula"):
            return e.Formula(self._expression(query.formula), defaults=query.defaults)
        if hasattr(query, "rrf"):
            return e.Fusion.Rrf(query.rrf.k)
        return e.Query.Nearest(self._vector(query), using=using)

    def _expression(self, node):
        expression = self.edge.Expression
        if isinstance(node, (int, float)):
            return expression.Constant(float(node))
        if isinstance(node, str):
            return expression.Variable(node)
        if hasattr(node, "sum"):
            return expression.Sum([self._expression(x) for x in node.sum])
        if hasattr(node, "mult"):
            return expression.Mult([self._expression(x) for x in node.mult])
        raise InputError(f"the embedded Qdrant cannot run the formula part {type(node).__name__}")


def _from_edge(vector):
    """An Edge vector as qdrant_client gives it: a list, or an object with indices and values."""
    if hasattr(vector, "indices"):
        return SimpleNamespace(indices=list(vector.indices), values=list(vector.values))
    return list(vector)
