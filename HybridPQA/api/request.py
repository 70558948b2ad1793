"""The one check of a search request (k, the scorer, the query texts), used by the Python API,
`hybridpqa search` and the service, so each refuses the same things with the same line."""
from __future__ import annotations

from dataclasses import dataclass

from HybridPQA.data.corpus import check_texts
from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, SPARSE, scorers

SCORERS = scorers((DENSE, SPARSE))  # hybrid, dense, sparse


@dataclass(frozen=True)
class SearchRequest:
    """A checked request: {qid: text}, the depth `k`, and the scorer."""

    queries: dict[str, str]
    k: int
    scorer: str


def check_scorer(scorer: str | None, served: list[str] | tuple[str, ...], default: str, flag: str = "scorer") -> str:
    """`scorer` (None: `default`) if the index serves it, else one line naming what it serves."""
    scorer = scorer or default
    named = f"{flag}={scorer}" if flag.startswith("--") else f"{flag} {scorer!r}"
    if scorer not in SCORERS:
        raise InputError(f"{named}: choose one of {', '.join(SCORERS)}")
    if scorer not in served:
        raise InputError(f"{named}: this model gives only {', '.join(served) or 'no scores'}; choose another")
    return scorer


def check_k(k, max_k: int | None = None, flag: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or (max_k is not None and k > max_k):
        upto = f"from 1 to {max_k}" if max_k is not None else ">= 1"
        raise InputError(f"{flag} = {k!r}: give a whole number {upto}")
    return k


def check_request(queries, k, scorer: str | None, served, default: str, max_k: int | None = None,
                  source: str = "search") -> SearchRequest:
    """`queries` as check_texts takes them (a single string too: id "0")."""
    if isinstance(queries, str) and not queries.strip():
        raise InputError(f"{source}: empty; give the text to search for")
    checked = check_texts([queries] if isinstance(queries, str) else queries, "query", source)
    return SearchRequest(checked, check_k(k, max_k), check_scorer(scorer, served, default))
