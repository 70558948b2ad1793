"""How a model turns text into representations, outside its weights: saved with every checkpoint
as `encoding.json`, so whoever loads the model encodes and scores as it was trained."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic

ENCODING_FILE = "encoding.json"


@dataclass(frozen=True)
class EncodingSettings:
    query_max_length: int = 128  # tokens, truncation
    context_max_length: int = 128
    similarity: str = "dot"  # "dot" | "cosine" (vectors are unit-normalised before the dot product)
    pooling: str = "cls"  # dense head: "cls" | "mean"
    agg: str = "max"  # sparse head over tokens: "max" | "sum"
    top_k: int | None = 768  # sparse head: terms kept per text; None = all
    vocab_mask: tuple[str, ...] = ()  # sparse head: vocabulary groups masked out

    def max_length(self, side: str) -> int:
        """Truncation length of "query" or "context" texts; a (query, context) "pair" gets both."""
        return {"query": self.query_max_length, "context": self.context_max_length,
                "pair": self.query_max_length + self.context_max_length}[side]

    @property
    def cosine(self) -> bool:
        return self.similarity == "cosine"

    def save(self, folder: Path) -> None:
        write_atomic(Path(folder) / ENCODING_FILE, json.dumps(asdict(self), indent=2))

    @classmethod
    def from_dict(cls, saved, source: str) -> EncodingSettings:
        """From `asdict` output (hybridpqa.json, index.json), checked; a one-line error naming `source`."""
        try:  # a field an older file lacks takes its default
            settings = cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved}
                           | {"vocab_mask": tuple(saved.get("vocab_mask", ()))})
        except (KeyError, TypeError, AttributeError) as err:
            raise InputError(f"{source}: unreadable encoding settings ({err.__class__.__name__}: {err}); the file is "
                             "damaged") from None
        problems = [
            (any(not isinstance(n, int) or isinstance(n, bool) or n < 1
                 for n in (settings.query_max_length, settings.context_max_length)), "max lengths must be integers >= 1"),
            (settings.similarity not in ("dot", "cosine"), f"similarity {settings.similarity!r} is not dot or cosine"),
            (settings.pooling not in ("cls", "mean"), f"pooling {settings.pooling!r} is not cls or mean"),
            (settings.agg not in ("max", "sum"), f"agg {settings.agg!r} is not max or sum"),
            (settings.top_k is not None and (not isinstance(settings.top_k, int) or settings.top_k < 1),
             f"top_k {settings.top_k!r} must be an integer >= 1 or null")]
        for bad, message in problems:
            if bad:
                raise InputError(f"{source}: encoding settings: {message}; the file is damaged")
        return settings


def build_encoding(cfg) -> EncodingSettings:
    m = cfg.RETRIEVER.MODEL
    return EncodingSettings(int(m.QUESTION_MAX_LENGTH), int(m.CONTEXT_MAX_LENGTH), cfg.RETRIEVER.SOLVER.FUNC,
                            m.POOLING, m.AGG, m.TOP_K, tuple(m.VOCAB_MASK))
