"""Encode texts in length-sorted batches and score queries against documents.

Dense vectors are kept as a float32 (N, D) tensor, sparse ones as a scipy CSR (N, V) matrix,
late-interaction token vectors as a float16 (N, L, D) tensor with zero rows for padding.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from HybridPQA.modeling import BiEncoder
from HybridPQA.runtime import autocast, progress
from HybridPQA.scoring import maxsim

Reps = dict[str, object]  # {"dense": Tensor (N, D), "sparse": csr_matrix (N, V), "late": Tensor (N, L, D)}
PAIR_CHUNK = 512  # query-document pairs per MaxSim product


def _to_csr(weights: torch.Tensor) -> sp.csr_matrix:
    return sp.csr_matrix(weights.float().cpu().numpy())


@torch.inference_mode()
def encode(model: BiEncoder, tokenizer, side: str, texts: list[str], max_length: int, batch_size: int,
           device: torch.device, dtype: torch.dtype | None = None, cosine: bool = False) -> Reps:
    """Encode `texts` with the query or context encoder; batches hold texts of similar length,
    so little padding is computed. Output rows follow the input order; unit length with `cosine`."""
    model.eval()
    ids = tokenizer(texts, truncation=True, max_length=max_length, return_token_type_ids=False)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    dense, sparse, late = [], [], []
    bar = progress(total=len(texts), desc=f"encode {side}s", unit="text", enabled=len(texts) > batch_size)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
        with autocast(device, dtype):
            reps = model.encode(side, batch["input_ids"].to(device), batch["attention_mask"].to(device))
        if "dense" in reps:
            dense.append(reps["dense"].float().cpu())
        if "sparse" in reps:
            sparse.append(_to_csr(reps["sparse"]))
        if "late" in reps:
            late.append(reps["late"].to(torch.float16).cpu())
        bar.update(len(chunk))
    bar.close()
    inverse = np.argsort(order)
    out: Reps = {}
    if dense:
        out["dense"] = torch.cat(dense)[torch.from_numpy(inverse)]
    if sparse:
        out["sparse"] = sp.vstack(sparse).tocsr()[inverse]
    if late:
        length = max(t.shape[1] for t in late)
        out["late"] = torch.cat([F.pad(t, (0, 0, 0, length - t.shape[1])) for t in late])[torch.from_numpy(inverse)]
    return normalized(out) if cosine else out


def normalized(reps: Reps) -> Reps:
    """Unit-length rows, for FUNC = cosine (token vectors already are)."""
    out = {k: v for k, v in reps.items() if k == "late"}
    if "dense" in reps:
        out["dense"] = F.normalize(reps["dense"], dim=-1)
    if "sparse" in reps:
        norms = np.sqrt(np.asarray(reps["sparse"].multiply(reps["sparse"]).sum(1))).ravel()
        out["sparse"] = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ reps["sparse"]
    return out


def pair_scores(queries: Reps, docs: Reps, q_index: np.ndarray, d_index: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of the pairs (queries[q_index[k]], docs[d_index[k]]), per head."""
    out = {}
    if "dense" in queries:
        out["dense"] = (queries["dense"][q_index] * docs["dense"][d_index]).sum(-1).numpy()
    if "sparse" in queries:
        out["sparse"] = np.asarray(queries["sparse"][q_index].multiply(docs["sparse"][d_index]).sum(1)).ravel()
    if "late" in queries:
        out["late"] = np.concatenate([
            torch.vmap(lambda q, d: maxsim(q[None], d[None])[0, 0])(
                queries["late"][q_index[k:k + PAIR_CHUNK]].float(), docs["late"][d_index[k:k + PAIR_CHUNK]].float()
            ).numpy() for k in range(0, len(q_index), PAIR_CHUNK)]) if len(q_index) else np.zeros(0, np.float32)
    return out


def active_dims(reps: Reps) -> float | None:
    """Mean number of non-zero terms per sparse vector."""
    return float(np.diff(reps["sparse"].indptr).mean()) if "sparse" in reps else None
