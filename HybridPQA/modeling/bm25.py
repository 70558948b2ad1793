"""BM25 with corpus-level statistics (bm25s, Lucene's formula) and an NLTK analyzer.

The statistics come from every document of the split (the whole corpus, or every candidate of
every question), not from one question's handful of candidates as in the original code.
"""
from __future__ import annotations

import re

import bm25s
import numpy as np
from nltk.stem import PorterStemmer
from yacs.config import CfgNode

from HybridPQA.modeling.vocab import english_stopwords

TOKEN = re.compile(r"\w+")


class Analyzer:
    """text -> terms: lowercase, \\w+ tokens (numbers kept: sizes and model numbers matter in
    product QA), NLTK English stopwords removed, Porter stems."""

    def __init__(self, stem: bool = True, stopwords: bool = True):
        self.stemmer = PorterStemmer() if stem else None
        self.stopwords = set(english_stopwords()) if stopwords else set()
        self.cache: dict[str, str] = {}

    def _stem(self, token: str) -> str:
        if token not in self.cache:
            self.cache[token] = self.stemmer.stem(token)
        return self.cache[token]

    def __call__(self, text: str) -> list[str]:
        tokens = [t for t in TOKEN.findall(text.lower()) if t not in self.stopwords]
        return [self._stem(t) for t in tokens] if self.stemmer is not None else tokens


class BM25:
    """index(texts) once, then scores(query) -> (N,) scores of every indexed text."""

    heads = ("bm25",)

    def __init__(self, k1: float = 0.9, b: float = 0.4, analyzer: Analyzer | None = None):
        self.k1, self.b = k1, b
        self.analyzer = analyzer or Analyzer()

    def index(self, texts: list[str]) -> BM25:
        self.size = len(texts)
        self.model = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self.model.index([self.analyzer(t) for t in texts], show_progress=False)
        return self

    def scores(self, query: str) -> np.ndarray:
        terms = self.analyzer(query)
        if not terms:  # a query of stopwords only matches nothing
            return np.zeros(self.size, dtype=np.float32)
        return self.model.get_scores(terms).astype(np.float32)


def build_bm25(cfg: CfgNode) -> BM25:
    b = cfg.RETRIEVER.BM25
    return BM25(b.K1, b.B, Analyzer(b.STEM, b.STOPWORDS))
