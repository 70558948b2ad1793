"""build_model with the real splade-tiny: heads, shared encoders, a checkpoint without MLM head."""
import logging
import shutil

import pytest
import torch
from transformers import BertModel

from HybridPQA.config import load_config
from HybridPQA.modeling import build_model, tokenize
from HybridPQA.modeling.vocab import build_vocab_mask, english_stopwords


def cfg_for(model, *overrides):
    return load_config(None, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model), *overrides], dotenv_path=None)


def test_hybrid_shapes_and_dropout(splade_tiny):
    model, tok = build_model(cfg_for(splade_tiny, "RETRIEVER.MODEL.DROPOUT", "0.0", "RETRIEVER.MODEL.PROJECTION_DIM", "16"))
    assert model.query_encoder.mlm.config.hidden_dropout_prob == 0.0
    model.eval()
    batch = tokenize(tok, ["how many aaa batteries?", "does it float"], 32)
    reps = model.encode("query", **batch)
    assert reps["dense"].shape == (2, 16) and reps["sparse"].shape == (2, 30522)
    assert model.context_encoder is not model.query_encoder


def test_shared_encoder_and_single_heads(splade_tiny):
    model, tok = build_model(cfg_for(splade_tiny, "RETRIEVER.MODEL.SHARED_ENCODER", "True",
                                     "RETRIEVER.MODEL.BIENCODER_TYPE", "sparse"))
    model.eval()
    batch = tokenize(tok, ["a lego set for kids"], 32)
    assert model.context_encoder is None and model.heads == ("sparse",)
    assert torch.equal(model.encode("query", **batch)["sparse"], model.encode("context", **batch)["sparse"])
    dense, _ = build_model(cfg_for(splade_tiny, "RETRIEVER.MODEL.BIENCODER_TYPE", "dense"))
    assert dense.heads == ("dense",)


def test_plain_bert_checkpoint_gets_a_tied_mlm_head(splade_tiny, tmp_path, caplog):
    BertModel.from_pretrained(splade_tiny, add_pooling_layer=False).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(splade_tiny / name, tmp_path / name)
    with caplog.at_level(logging.WARNING):
        model, _ = build_model(cfg_for(tmp_path))
    assert "has no MLM head" in caplog.text
    mlm = model.query_encoder.mlm
    assert mlm.get_output_embeddings().weight.data_ptr() == mlm.get_input_embeddings().weight.data_ptr()


def test_vocab_mask(splade_tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(splade_tiny)
    allowed = build_vocab_mask(tok, ("special", "punctuation", "stopwords"), 30522)
    ids = tok.convert_tokens_to_ids
    assert not allowed[[ids("[CLS]"), ids("[SEP]"), ids("[PAD]"), ids("[unused5]"), ids("?"), ids("the"), ids("t")]].any()
    assert allowed[[ids(":"), ids("-"), ids('"'), ids("battery"), ids("3")]].all()
    assert build_vocab_mask(tok, ("special",), 30522)[ids("the")]


def test_packaged_stopwords_match_nltk():
    words = english_stopwords()
    assert len(words) == 179 and "the" in words and "wouldn't" in words
    try:
        from nltk.corpus import stopwords

        nltk_words = stopwords.words("english")
    except LookupError:
        pytest.skip("nltk_data is not installed here; the packaged list is used")
    assert set(words) <= set(nltk_words)


@pytest.mark.parametrize("arch", ["distilbert", "roberta"])
def test_other_masked_lm_architectures(arch, splade_tiny, tmp_path):
    """Any HF masked LM works: RoBERTa-style `lm_head` and whole-model fallback (DistilBERT)."""
    from transformers import DistilBertConfig, DistilBertForMaskedLM, RobertaConfig, RobertaForMaskedLM

    if arch == "distilbert":
        mlm = DistilBertForMaskedLM(DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    else:
        mlm = RobertaForMaskedLM(RobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=64, pad_token_id=0))
    mlm.save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(splade_tiny / name, tmp_path / name)
    model, tok = build_model(cfg_for(tmp_path, "RETRIEVER.MODEL.SHARED_ENCODER", "True"))
    model.eval()
    batch = tokenize(tok, ["a short text", "a somewhat longer text with padding"], 32)
    reps = model.encode("query", **batch)
    assert reps["dense"].shape == (2, 32) and reps["sparse"].shape == (2, 30522)
    assert (reps["sparse"] >= 0).all()
