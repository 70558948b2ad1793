"""Defaults that do not hurt: a plain model searches with what it was trained for, and says so.
A masked LM zero-shot ranks with its term weights (sparse); a sentence encoder without an MLM head
(the real all-MiniLM-L6-v2) with its own pooled vector, equal to sentence-transformers' own."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from HybridPQA.api import SearchIndex
from HybridPQA import HybridRetriever
from HybridPQA.cli import main
from HybridPQA.errors import InputError

TEXTS = ["do statins lower the risk of dementia?",
         "Statin use was associated with a reduced risk of dementia in a cohort of 3,000 older adults.",
         "A wool sweater, hand knitted in Scotland, keeps you warm. " * 40]  # longer than 256 tokens


def test_a_sentence_encoder_searches_dense_with_its_own_pooling_equal_to_sentence_transformers(minilm, caplog):
    from sentence_transformers import SentenceTransformer

    with caplog.at_level(logging.INFO):
        retriever = HybridRetriever.from_pretrained(minilm, ["PRECISION", "fp32"])
    assert retriever.default_scorer == "dense"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("default scorer")]
    assert said == ["default scorer dense: a sentence encoder without an MLM head, with its own mean pooling, "
                    "256 tokens, cosine (from its sentence-transformers files)"]
    enc = retriever.encoding
    assert (enc.pooling, enc.query_max_length, enc.context_max_length, enc.similarity) == ("mean", 256, 256, "cosine")
    assert "sparse" not in retriever.encoder.heads  # no random MLM head is run
    theirs = SentenceTransformer(str(minilm), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(retriever.encode_documents(TEXTS).dense, theirs, atol=1e-5)
    np.testing.assert_allclose(retriever.encode_queries(TEXTS).dense, theirs, atol=1e-5)
    hits = SearchIndex.build(retriever, dict(zip("abc", TEXTS[1:] + ["a usb-c charging cable"]))).search(TEXTS[0], k=3)
    assert hits[0][0] == "a"
    with pytest.raises(InputError, match="this model gives only dense"):
        retriever.score(TEXTS[0], TEXTS[1:], scorer="sparse")


def test_what_the_user_sets_wins_over_what_the_model_says(minilm):
    retriever = HybridRetriever.from_pretrained(minilm, ["RETRIEVER.MODEL.QUESTION_MAX_LENGTH", "64"])
    assert (retriever.encoding.query_max_length, retriever.encoding.context_max_length) == (64, 256)


def test_a_masked_lm_zero_shot_searches_sparse(splade_tiny, tmp_path, capsys):
    retriever = HybridRetriever.from_pretrained(splade_tiny)
    assert retriever.default_scorer == "sparse" and "untrained CLS" in retriever.why
    docs = dict(zip("abc", TEXTS[1:] + ["a usb-c charging cable"]))
    index = SearchIndex.build(retriever, docs)
    q = retriever.encode_queries([TEXTS[0]]).sparse
    d = retriever.encode_documents(list(docs.values())).sparse
    sparse = (q @ d.T).toarray()[0]
    got = index.search(TEXTS[0], k=3)
    assert [s for _, s in got] == pytest.approx(sorted(sparse, reverse=True), rel=1e-5)
    assert retriever.score(TEXTS[0], list(docs.values())) == pytest.approx(sparse, rel=1e-5)
    # the command: a bad --scorer is refused before the model loads, a missing one is the default
    (tmp_path / "c.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in docs.items()))
    main(["index", f"--model={splade_tiny}", f"--corpus={tmp_path / 'c.tsv'}", f"--output={tmp_path / 'ix'}"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["search", f"--index={tmp_path / 'ix'}", "--query=x", "--scorer=bm25"])
    assert "--scorer=bm25: choose one of hybrid, dense, sparse" in capsys.readouterr().err
