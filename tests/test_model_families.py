"""I3's document-side interaction and inference-free (static) queries, built from the real splade-tiny."""
import pytest
import torch

from HybridPQA.config import load_config
from HybridPQA.data.readers import RankingData
from HybridPQA.data.training import TrainingSet, pseudo_queries
from HybridPQA.engine.step import reconstruction_targets
from HybridPQA.modeling import build_checkpointer, build_model, tokenize
from HybridPQA.modeling.static import init_static_queries

DOCS = ["this crisper drawer fits frigidaire refrigerators.", "a stainless steel kettle, 1.7 litres",
        "the battery lasts about ten hours of use"]


def _model(splade_tiny, *overrides):
    cfg = load_config(None, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), *overrides])
    return cfg, *build_model(cfg)


def _encode(model, tokenizer, side, texts):
    return model.encode(side, **tokenize(tokenizer, texts, 64))


def test_i3_is_document_side_and_survives_a_checkpoint(splade_tiny, tmp_path):
    torch.manual_seed(0)
    cfg, model, tokenizer = _model(splade_tiny, "RETRIEVER.MODEL.IMPLICIT_INTERACTION", "True", "RETRIEVER.MODEL.I3.SLOTS", "8")
    assert model.query_encoder.interaction is None and model.context_encoder.interaction is not None
    with torch.no_grad():  # I3.SPARSE's condition starts at zero: the expansion is the plain one, then trains
        model.context_encoder.interaction.condition.weight.normal_(0, 0.1)
    model.eval()
    with torch.no_grad():
        batch = _encode(model, tokenizer, "context", DOCS)
        alone = _encode(model, tokenizer, "context", DOCS[:1])
        assert "pseudo_query" not in batch  # the generator runs in training only
        for head in ("dense", "sparse"):  # a document's vectors depend on it alone: indexable ahead
            assert torch.allclose(batch[head][:1], alone[head], atol=1e-5)
        model.context_encoder.interaction.condition.weight.zero_()
        plain = _encode(model, tokenizer, "context", DOCS)["sparse"]
        assert not torch.allclose(plain, batch["sparse"])  # the interactor conditions the expansion
    model.train()
    reps = _encode(model, tokenizer, "context", DOCS)
    assert reps["pseudo_query"].shape == (3, 8, tokenizer.vocab_size)
    model.eval()
    build_checkpointer(cfg, tokenizer).save(model, tmp_path / "ckpt")
    loaded, _ = build_model(cfg, checkpoint=tmp_path / "ckpt")
    loaded.eval()
    with torch.no_grad():
        before, after = _encode(model, tokenizer, "context", DOCS), _encode(loaded, tokenizer, "context", DOCS)
    assert all(torch.allclose(before[h], after[h], atol=1e-6) for h in ("dense", "sparse"))


def test_contexts_without_a_pseudo_query_get_no_reconstruction_target(splade_tiny):
    data = RankingData("train", {"q1": "does it fit a frigidaire", "q2": "how long does the battery last"},
                       {f"d{i}": t for i, t in enumerate(DOCS + ["x y", "z w", "more text here"])},
                       {"q1": {"d0": 1}, "q2": {"d2": 1}})
    targets = pseudo_queries(data, "questions")
    assert targets == {"d0": "does it fit a frigidaire", "d2": "how long does the battery last"}
    assert pseudo_queries(data, "title")["d0"] == "this crisper drawer fits frigidaire refrigerators."
    fallback = pseudo_queries(data, "questions-or-title")
    assert fallback["d0"] == targets["d0"] and fallback["d1"] == "a stainless steel kettle, 1.7 litres"
    batch = TrainingSet(data, 2, 1, 2, seed=0, pseudo_queries=targets).batch(0, 0)
    _, _, tokenizer = _model(splade_tiny)
    ids = reconstruction_targets(tokenizer, batch.pseudo_queries, 8, "cpu")
    for text, row in zip(batch.pseudo_queries, ids):
        assert (row != -100).any() == (text is not None)
    assert batch.labels.shape == (2, 2) and batch.labels[:, 0].tolist() == [1.0, 1.0]


def test_static_queries_run_no_transformer_and_survive_a_checkpoint(splade_tiny, tmp_path):
    cfg, model, tokenizer = _model(splade_tiny, "RETRIEVER.MODEL.QUERY_ENCODER", "static")
    init_static_queries(model, tokenizer, DOCS, 64)
    assert model.query_encoder.mlm is None and model.heads == ("dense", "sparse")
    model.eval()
    with torch.no_grad():
        query = _encode(model, tokenizer, "query", ["frigidaire drawer", "the kettle"])
    sparse = query["sparse"][0]
    terms = {tokenizer.convert_ids_to_tokens(i) for i in sparse.nonzero().flatten().tolist()}
    assert "drawer" in terms and terms <= set(tokenizer.tokenize("frigidaire drawer"))  # the query's terms only
    assert query["sparse"][1].count_nonzero() == 1  # "the" is a stopword: only "kettle" weighs
    assert query["dense"].shape == (2, model.backbone_config.hidden_size)
    build_checkpointer(cfg, tokenizer).save(model, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "query").exists()  # nothing to save but its weights (heads.safetensors)
    loaded, _ = build_model(cfg, checkpoint=tmp_path / "ckpt")
    loaded.eval()
    with torch.no_grad():
        again = _encode(loaded, tokenizer, "query", ["frigidaire drawer", "the kettle"])
    assert torch.equal(again["sparse"], query["sparse"]) and torch.allclose(again["dense"], query["dense"])


def test_lexical_queries_share_the_document_transformer(splade_tiny, tmp_path):
    """QUERY_ENCODER static + SHARED_ENCODER: a query's dense vector comes from the documents' own
    transformer, its sparse vector is its IDF-weighted terms; one transformer is saved and reloaded."""
    cfg, model, tokenizer = _model(splade_tiny, "RETRIEVER.MODEL.QUERY_ENCODER", "static", "RETRIEVER.MODEL.STATIC_DENSE",
                                   "transformer", "RETRIEVER.MODEL.SHARED_ENCODER", "True")
    init_static_queries(model, tokenizer, DOCS, 64)
    assert model.query_encoder.mlm is model.context_encoder.mlm
    model.eval()
    with torch.no_grad():
        query = _encode(model, tokenizer, "query", ["frigidaire drawer"])
        as_document = _encode(model, tokenizer, "context", ["frigidaire drawer"])
    assert torch.equal(query["dense"], as_document["dense"])
    assert query["sparse"].count_nonzero() < as_document["sparse"].count_nonzero()  # no expansion
    build_checkpointer(cfg, tokenizer).save(model, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "query").exists() and (tmp_path / "ckpt" / "context").is_dir()
    loaded, _ = build_model(cfg, checkpoint=tmp_path / "ckpt")
    assert loaded.query_encoder.mlm is loaded.context_encoder.mlm
    loaded.eval()
    with torch.no_grad():
        again = _encode(loaded, tokenizer, "query", ["frigidaire drawer"])
    assert torch.equal(again["sparse"], query["sparse"]) and torch.allclose(again["dense"], query["dense"])
    with pytest.raises(ValueError, match="STATIC_DENSE 'transformer'"):
        load_config(None, ["RETRIEVER.MODEL.QUERY_ENCODER", "static", "RETRIEVER.MODEL.SHARED_ENCODER", "True"])


@pytest.mark.parametrize("objective", ["contrastive", "symmetric-infonce", "cosent", "softmax", "cosine-mse",
                                       "triplet"])
def test_every_objective_trains_the_real_model(objective, splade_tiny, raw_data, tmp_path):
    """One optimizer step of each SOLVER.LOSS on an ePQA batch (graded labels) moves the backbone."""
    from HybridPQA.data.prepare import prepare_epqa
    from HybridPQA.data.readers import read_split
    from HybridPQA.engine.schedule import build_optimizer, vector_sizes
    from HybridPQA.engine.step import loss_parts
    from HybridPQA.losses import build_loss
    from HybridPQA.modeling.encoding import build_encoding

    prepare_epqa(raw_data / "epqa", tmp_path)
    cfg, model, tokenizer = _model(splade_tiny, "RETRIEVER.SOLVER.LOSS", objective, "RETRIEVER.SOLVER.FUNC", "cosine",
                                   "RETRIEVER.SOLVER.OPTIMIZER.HEAD_LR", "1e-3", "PRECISION", "fp32")
    batch = TrainingSet(read_split(tmp_path / "train.json"), 4, 2, 4, seed=0).batch(0, 0)
    loss = build_loss(cfg, vector_sizes(model))
    optimizer = build_optimizer(model, cfg.RETRIEVER.SOLVER.OPTIMIZER, loss)
    assert {g["lr"] for g in optimizer.param_groups} == {1e-5, 1e-3}  # backbones at BASE_LR, the rest at HEAD_LR
    parts, _ = loss_parts(model, tokenizer, batch, loss, build_encoding(cfg), torch.device("cpu"), 0, None)
    name = objective.replace("-", "_")
    assert {f"{name}_dense", f"{name}_sparse"} <= set(parts) and all(torch.isfinite(v) for v in parts.values())
    before = model.context_encoder.mlm.base_model.encoder.layer[0].output.dense.weight.detach().clone()
    sum(parts.values()).backward()
    optimizer.step()
    assert not torch.equal(before, model.context_encoder.mlm.base_model.encoder.layer[0].output.dense.weight)


def test_static_queries_export_to_sentence_transformers(splade_tiny, tmp_path):
    from sentence_transformers import SentenceTransformer, SparseEncoder

    from HybridPQA.modeling.encode import Encoder
    from HybridPQA.modeling.encoding import build_encoding
    from HybridPQA.modeling.st_export import export_sentence_transformers

    cfg, model, tokenizer = _model(splade_tiny, "RETRIEVER.MODEL.QUERY_ENCODER", "static", "RETRIEVER.SOLVER.FUNC",
                                   "cosine")
    init_static_queries(model, tokenizer, DOCS, 64)
    model.eval()
    folders = export_sentence_transformers(Encoder(model, tokenizer, build_encoding(cfg), torch.device("cpu")), tmp_path)
    assert folders == ["sparse", "dense"]
    queries = ["frigidaire drawer", "how long does the battery last?"]
    with torch.no_grad():
        ours = _encode(model, tokenizer, "query", queries)
    sparse = SparseEncoder(str(tmp_path / "sparse")).encode_query(queries, convert_to_tensor=True).to_dense()
    assert (sparse - ours["sparse"]).abs().max() < 1e-5
    dense = SentenceTransformer(str(tmp_path / "dense")).encode_query(queries, convert_to_tensor=True)
    assert (dense - ours["dense"]).abs().max() < 1e-5
    docs = SparseEncoder(str(tmp_path / "sparse")).encode_document(DOCS[:2], convert_to_tensor=True).to_dense()
    assert (docs - _encode(model, tokenizer, "context", DOCS[:2])["sparse"]).abs().max() < 1e-5

@pytest.mark.slow  # evaluates end to end
def test_zero_shot_lexical_queries_weigh_terms_by_the_corpus_idf(splade_tiny, small_beir, tmp_path):
    """`evaluate` without a checkpoint starts static query weights from the evaluated corpus's IDF
    (as BM25 would), not from 1 for every term."""
    from HybridPQA.cli import main

    lexical = ["RETRIEVER.MODEL.QUERY_ENCODER", "static", "RETRIEVER.MODEL.STATIC_DENSE", "transformer",
               "RETRIEVER.MODEL.SHARED_ENCODER", "True", "RETRIEVER.MODEL.TOP_K", "256"]
    results = main(["evaluate", f"--output={tmp_path}", f"--data={small_beir}", "--split=test", "--env=none",
                    "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "RETRIEVER.SOLVER.FUNC", "cosine",
                    "RETRIEVER.COMPUTE_FLOPS", "False", *lexical])["test"]
    documents = sum(1 for _ in (small_beir / "corpus.jsonl").open())
    assert f"IDF of {documents} contexts" in (tmp_path / "default" / "log.txt").read_text()  # EXP default
    assert results["metrics"]["sparse"]["ndcg@10"] > 0.3 and set(results["metrics"]) == {"hybrid", "dense", "sparse"}
