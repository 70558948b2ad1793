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
    def load(cls, folder: Path) -> EncodingSettings:
        path = Path(folder) / ENCODING_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{f.name: saved[f.name] for f in fields(cls)} | {"vocab_mask": tuple(saved["vocab_mask"])})
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path}: unreadable encoding settings ({err.__class__.__name__}); the checkpoint is "
                             "damaged or older than this file") from None


def build_encoding(cfg) -> EncodingSettings:
    m = cfg.RETRIEVER.MODEL
    return EncodingSettings(int(m.QUESTION_MAX_LENGTH), int(m.CONTEXT_MAX_LENGTH), cfg.RETRIEVER.SOLVER.FUNC,
                            m.POOLING, m.AGG, m.TOP_K, tuple(m.VOCAB_MASK))
