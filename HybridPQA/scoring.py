"""Scores, on the ground floor: similarity of representations, the hybrid score, and the ranking order.

Each is defined once here and used by training (the losses), evaluation, explain and mining:

- `maxsim`: MaxSim of token vectors (late interaction), the one the head table scores with;
- `Fusion`: the hybrid score, linear (after a per-query normalisation) or reciprocal-rank fusion,
  computed over every document of a query. Normalisations follow ranx's definitions (min-max, and
  z-score = ranx's "zmuv"), so a weight tuned with `ranx.optimize_fusion` means the same here;
- `ranking`: the one order of a query's documents, written to TREC files and scored by the metrics.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic

if TYPE_CHECKING:
    import torch
# torch is imported inside the functions that compute with it: the config checks its choices against
# METHODS and NORMS, and a mistyped key must be reported before torch loads (seconds)

DECIMALS = 6  # a ranked score is kept to 1e-6, as TREC files print it
METHODS = ("linear", "rrf")  # Fusion.method, as RETRIEVER.FUSION.METHOD
NORMS = ("none", "min-max", "z-score")  # Fusion.norm, as RETRIEVER.FUSION.NORM


def maxsim(queries: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
    """(Q, Lq, D), (N, Ld, D) token vectors, padding rows zero -> (Q, N): for each query token its
    best context token's similarity, summed over query tokens (ColBERT). Padding never matches."""
    import torch

    sims = torch.einsum("qid,njd->qnij", queries, contexts)
    padding = contexts.abs().sum(-1) == 0  # (N, Ld)
    sims = sims.masked_fill(padding[None, :, None, :], float("-inf")).amax(-1)
    query_padding = queries.abs().sum(-1) == 0  # (Q, Lq)
    return sims.masked_fill(query_padding[:, None, :], 0.0).sum(-1)


def _masked(scores: torch.Tensor, columns: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    columns = torch.ones_like(scores, dtype=torch.bool) if columns is None else columns
    return columns, columns.sum(1, keepdim=True).clamp(min=1)


def normalize(scores, norm: str, columns: torch.Tensor | None = None):
    """(Q, N) -> (Q, N), each row on its own over its `columns` (Q, N) bool (default: all of them):
    min-max to [0, 1] or z-score with the population std (ranx's zmuv). numpy in, numpy out."""
    if isinstance(scores, np.ndarray):
        import torch

        return normalize(torch.from_numpy(scores), norm, columns).numpy()
    if norm == "none":
        return scores
    columns, count = _masked(scores, columns)
    if norm == "min-max":
        low = scores.masked_fill(~columns, float("inf")).amin(1, keepdim=True)
        high = scores.masked_fill(~columns, float("-inf")).amax(1, keepdim=True)
        return (scores - low) / (high - low).clamp(min=1e-9)
    if norm == "z-score":
        mean = scores.masked_fill(~columns, 0.0).sum(1, keepdim=True) / count
        var = ((scores - mean) ** 2).masked_fill(~columns, 0.0).sum(1, keepdim=True) / count
        return (scores - mean) / var.sqrt().clamp(min=1e-9)
    raise ValueError(f"unknown normalisation {norm!r}")


def ranks(scores, columns: torch.Tensor | None = None):
    """(Q, N) -> (Q, N) 1-based rank of each column in its row, ties by lower column; columns outside
    `columns` rank after every column inside. numpy in, numpy out."""
    import torch

    if isinstance(scores, np.ndarray):
        return ranks(torch.from_numpy(scores), columns).numpy()
    if columns is not None:
        scores = scores.masked_fill(~columns, float("-inf"))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    positions = torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


@dataclass(frozen=True)
class Fusion:
    """The hybrid score of a query's documents from their dense and sparse scores.

    linear: alpha * norm(dense) + (1 - alpha) * norm(sparse), norm per query over its documents;
    rrf: 1 / (rrf_k + rank_dense) + 1 / (rrf_k + rank_sparse).
    """

    method: str = "linear"  # "linear" | "rrf"
    norm: str = "none"  # linear only: "none" | "min-max" | "z-score"
    alpha: float = 0.5  # linear: weight of the dense score
    rrf_k: int = 60

    def parts(self, dense, sparse, columns: torch.Tensor | None = None) -> tuple:
        """(Q, N) dense and sparse scores of the same documents -> their (Q, N) shares of the hybrid
        score (which is their sum). `columns` (Q, N) bool: the documents each query is fused over."""
        if self.method == "rrf":
            return 1.0 / (self.rrf_k + ranks(dense, columns)), 1.0 / (self.rrf_k + ranks(sparse, columns))
        return (self.alpha * normalize(dense, self.norm, columns),
                (1 - self.alpha) * normalize(sparse, self.norm, columns))

    def fuse(self, dense, sparse, columns: torch.Tensor | None = None):
        """(Q, N), (Q, N) -> (Q, N) hybrid scores; numpy arrays or tensors."""
        dense_part, sparse_part = self.parts(dense, sparse, columns)
        return dense_part + sparse_part

    @property
    def differentiable(self) -> bool:
        return self.method != "rrf"

    def surrogate(self) -> Fusion:
        """The differentiable fusion training uses for this one: itself, and for RRF (ranks have no
        gradient) an equal-weight z-score sum, which like RRF is blind to each head's scale."""
        return self if self.differentiable else Fusion("linear", "z-score", 0.5)

    def describe(self) -> str:
        if self.method == "rrf":
            return f"rrf k={self.rrf_k}"
        return f"linear alpha={self.alpha:g} norm={self.norm}"

    def save(self, path: Path, **extra) -> None:
        write_atomic(path, json.dumps({**asdict(self), **extra}, indent=2))

    @classmethod
    def from_dict(cls, saved: dict, source: str = "fusion") -> Fusion:
        """From `asdict` output, extra keys (a results file's, fusion.json's) ignored; checked with the
        config's ranges, a one-line error naming `source` (the file it was read from) otherwise."""
        try:
            fusion = cls(**{k: saved[k] for k in ("method", "norm", "alpha", "rrf_k")})
        except (KeyError, TypeError) as err:
            raise InputError(f"{source}: not a fusion ({err.__class__.__name__}: {err}); the file is damaged") from None
        problems = [(fusion.method not in METHODS, f"method {fusion.method!r} is not one of {', '.join(METHODS)}"),
                    (fusion.norm not in NORMS, f"norm {fusion.norm!r} is not one of {', '.join(NORMS)}"),
                    (not isinstance(fusion.alpha, (int, float)) or not 0.0 <= fusion.alpha <= 1.0,
                     f"alpha {fusion.alpha!r} must lie in [0, 1]"),
                    (not isinstance(fusion.rrf_k, int) or fusion.rrf_k < 1, f"rrf_k {fusion.rrf_k!r} must be >= 1")]
        for bad, message in problems:
            if bad:
                raise InputError(f"{source}: fusion {message}; the file is damaged (tune again or delete it)")
        return fusion

    @classmethod
    def load(cls, path: Path) -> Fusion:
        try:
            saved = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: not a fusion file ({err.__class__.__name__}); delete it or tune again") from None
        return cls.from_dict(saved if isinstance(saved, dict) else {}, str(path))


def build_fusion(cfg) -> Fusion:
    """RETRIEVER.FUSION with SOLVER.ALPHA."""
    f = cfg.RETRIEVER.FUSION
    return Fusion(f.METHOD, f.NORM, float(cfg.RETRIEVER.SOLVER.ALPHA), int(f.RRF_K))


def ranking(scores: Mapping[str, float], depth: int | None = None) -> list[tuple[str, float]]:
    """One query's documents, best first, with the scores that TREC files and metrics use.

    Order: by score, ties by docid (pyserini's (-score, docid)). Each score is rounded to DECIMALS
    and, where it would tie the one before it (also once read as float32, as trec_eval reads them),
    lowered just below it (1e-6, or two float32 steps for scores past 8): ranked scores
    never tie, so every tool reads the same order from them (trec_eval breaks ties by docid
    descending, ranx by a hash).
    """
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:depth]
    out, previous = [], None
    for docid, score in ordered:
        if not math.isfinite(score):
            raise InputError(f"document {docid}: score {score} is not a finite number; the model or run is broken")
        units = round(score * 10 ** DECIMALS)
        # trec_eval reads scores as float32: the gap must outlast that rounding too
        gap = max(1, math.ceil(2 * float(np.spacing(np.float32(abs(score)))) * 10 ** DECIMALS))
        if previous is not None and units > previous - gap:
            units = previous - gap
        out.append((docid, units / 10 ** DECIMALS))
        previous = units
    return out
