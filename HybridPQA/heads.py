"""The heads, on the ground floor: what each kind of representation is, and how it is kept and scored.

`HEADS = {"dense": ..., "sparse": ..., "late": ...}` is the one table. Each entry says how an encoder
batch is moved to the host and stored, how batches are put back in input order, how vectors are
made unit length for cosine, how queries score documents (a (Q, N) matrix, or listed pairs), and
how the stored vectors are written to and read from arrays (the shard files). Encoding, rerank
scoring, the corpus index, the API, efficiency and the shard writer iterate over it; adding a head
touches this table and its own network (modeling.heads), nothing else.

- dense: (N, D) float32 tensor on the CPU (the API hands it out as numpy, zero-copy);
- sparse: (N, V) float32 scipy CSR, one column per vocabulary term;
- late: (N, L, D) float16 token vectors, zero rows for padding (MaxSim; reranking only).

`SCORER_HEADS` names the heads each scorer needs; the hybrid is fused from dense and sparse by
`scoring.Fusion`.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from HybridPQA.scoring import maxsim

DENSE, SPARSE, LATE = "dense", "sparse", "late"
HYBRID = "hybrid"  # the fused scorer of the dense and sparse heads
PAIR_CHUNK = 512  # query-document pairs per MaxSim product


class Head:
    """One kind of representation. Subclasses fill in storage and scoring; `name` keys every dict
    of representations ({head: vectors})."""

    name: str
    indexed = True  # a corpus index (retrieval.index) serves it; late interaction only reranks

    def unit(self, batch: torch.Tensor) -> torch.Tensor:
        """Unit-length vectors for cosine similarity (training and encoding alike)."""
        return F.normalize(batch.float(), dim=-1)

    def score(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        """(Q, ...), (N, ...) model outputs -> (Q, N) scores, with gradients (training)."""
        return queries @ documents.T

    def store(self, batch: torch.Tensor):
        """One encoder batch, moved to the host in this head's storage."""
        raise NotImplementedError

    def concat(self, parts: list, order: np.ndarray):
        """Stored batches, concatenated; then rows `order` taken (batches come length-sorted)."""
        raise NotImplementedError

    def matrix(self, queries, documents) -> np.ndarray:
        """(Q, N) float32 scores of stored queries against stored documents."""
        raise NotImplementedError

    def pairs(self, queries, documents, q_index: np.ndarray, d_index: np.ndarray) -> np.ndarray:
        """(P,) scores of the pairs (queries[q_index[p]], documents[d_index[p]])."""
        raise NotImplementedError

    def nbytes(self, stored) -> int:
        raise NotImplementedError

    def count(self, stored) -> int:
        """Rows (texts) held."""
        return stored.shape[0]

    def to_arrays(self, stored) -> dict[str, np.ndarray]:
        """Named arrays for an .npz file (no pickles)."""
        raise NotImplementedError

    def from_arrays(self, arrays) -> object | None:
        """The stored vectors back from `to_arrays`' names, or None when the file has none."""
        raise NotImplementedError


class DenseVectors(Head):
    name = DENSE

    def store(self, batch):
        return batch.float().cpu()

    def concat(self, parts, order):
        return torch.cat(parts)[torch.from_numpy(order)]

    def matrix(self, queries, documents):
        return (queries @ documents.T).numpy()

    def pairs(self, queries, documents, q_index, d_index):
        return (queries[q_index] * documents[d_index]).sum(-1).numpy()

    def nbytes(self, stored):
        return stored.numel() * stored.element_size()

    def to_arrays(self, stored):
        return {DENSE: stored.numpy()}

    def from_arrays(self, arrays):
        return torch.from_numpy(arrays[DENSE]) if DENSE in arrays else None


class SparseVectors(Head):
    name = SPARSE

    def store(self, batch):
        return sp.csr_matrix(batch.float().cpu().numpy())

    def concat(self, parts, order):
        return sp.vstack(parts).tocsr()[order]

    def matrix(self, queries, documents):
        return np.asarray((queries @ documents.T).todense(), dtype=np.float32)

    def pairs(self, queries, documents, q_index, d_index):
        return np.asarray(queries[q_index].multiply(documents[d_index]).sum(1), dtype=np.float32).ravel()

    def nbytes(self, stored):
        return int(stored.data.nbytes + stored.indices.nbytes + stored.indptr.nbytes)

    def to_arrays(self, stored):
        m = stored.tocsr()
        return {"data": m.data, "indices": m.indices, "indptr": m.indptr, "shape": np.array(m.shape)}

    def from_arrays(self, arrays):
        if "data" not in arrays:
            return None
        return sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"]))


class LateVectors(Head):
    name = LATE
    indexed = False

    def unit(self, batch):
        return batch  # the late head already gives unit token vectors, zero rows for padding

    def score(self, queries, documents):
        return maxsim(queries, documents)

    def store(self, batch):
        return batch.to(torch.float16).cpu()

    def concat(self, parts, order):
        length = max(t.shape[1] for t in parts)
        return torch.cat([F.pad(t, (0, 0, 0, length - t.shape[1])) for t in parts])[torch.from_numpy(order)]

    def matrix(self, queries, documents):
        return maxsim(queries.float(), documents.float()).numpy()

    def pairs(self, queries, documents, q_index, d_index):
        if not len(q_index):
            return np.zeros(0, np.float32)
        one = torch.vmap(lambda q, d: maxsim(q[None], d[None])[0, 0])
        return np.concatenate([one(queries[q_index[k:k + PAIR_CHUNK]].float(),
                                   documents[d_index[k:k + PAIR_CHUNK]].float()).numpy()
                               for k in range(0, len(q_index), PAIR_CHUNK)])

    def nbytes(self, stored):
        return stored.numel() * stored.element_size()

    def to_arrays(self, stored):
        return {LATE: stored.numpy()}

    def from_arrays(self, arrays):
        return torch.from_numpy(arrays[LATE]) if LATE in arrays else None


HEADS: dict[str, Head] = {head.name: head for head in (DenseVectors(), SparseVectors(), LateVectors())}
SCORER_HEADS = {HYBRID: (DENSE, SPARSE), DENSE: (DENSE,), SPARSE: (SPARSE,), LATE: (LATE,)}  # what each scorer needs


def of(reps: dict) -> dict:
    """The scored representations of `reps` ({head: vectors}; others, such as I3's pseudo_query, left out)."""
    return {h: v for h, v in reps.items() if h in HEADS}


def scorers(heads) -> tuple[str, ...]:
    """The scorers `heads` allow, hybrid first."""
    return tuple(s for s, needs in SCORER_HEADS.items() if set(needs) <= set(heads))
