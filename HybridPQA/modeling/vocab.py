"""The sparse head's vocabulary mask: which terms a SPLADE vector may never use.

The paper masks special tokens, punctuation (except `:`, `-` and `"`) and the word pieces of
NLTK's English stopwords. NLTK's stopword corpus cannot be downloaded at run time here, so
when `nltk.corpus.stopwords` is not installed we read the same 179-word list shipped in
HybridPQA/resources (tests check the two agree wherever NLTK data is present).
"""
from __future__ import annotations

import logging
import string
from importlib import resources

import torch

log = logging.getLogger(__name__)
KEPT_PUNCTUATION = {":", "-", '"'}


def english_stopwords() -> list[str]:
    """NLTK's English stopword list, from nltk_data when installed, else our packaged copy."""
    try:
        from nltk.corpus import stopwords

        return list(stopwords.words("english"))
    except LookupError:
        text = resources.files("HybridPQA").joinpath("resources/stopwords_english.txt").read_text()
        return text.split()


def build_vocab_mask(tokenizer, parts: tuple[str, ...], vocab_size: int) -> torch.Tensor:
    """(V,) bool, True where the sparse head may put weight."""
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    vocab = tokenizer.get_vocab()
    if "special" in parts:
        ids = set(tokenizer.all_special_ids)
        ids |= {i for tok, i in vocab.items() if tok.startswith("[") and tok.endswith("]")}  # [unused*]
        allowed[[i for i in ids if i < vocab_size]] = False
    if "punctuation" in parts:
        punct = set(string.punctuation) - KEPT_PUNCTUATION
        ids = [i for tok, i in vocab.items() if tok.lstrip("#") and all(c in punct for c in tok.lstrip("#"))]
        allowed[[i for i in ids if i < vocab_size]] = False
    if "stopwords" in parts:
        ids = {i for word in english_stopwords() for i in tokenizer(word, add_special_tokens=False)["input_ids"]}
        allowed[[i for i in ids if i < vocab_size]] = False
    log.info("vocabulary mask %s: %d of %d terms allowed", parts, int(allowed.sum()), vocab_size)
    return allowed
