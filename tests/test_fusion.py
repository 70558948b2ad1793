"""One hybrid score: what training fuses is what evaluation ranks with, for every fusion."""
import logging
from pathlib import Path

import pytest
import torch

from HybridPQA.config import load_config
from HybridPQA.data.readers import RankingData
from HybridPQA.evaluation.evaluator import build_ranker
from HybridPQA.losses import HybridLoss, build_loss, own_columns, own_scores
from HybridPQA.modeling import build_model, tokenize
from HybridPQA.modeling.encoding import build_encoding
from HybridPQA.scoring import Fusion, build_fusion

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = {"q1": "how long does the battery last", "q2": "is the jacket waterproof"}
CONTEXTS = {"q1": ["battery lasts ten hours", "the jacket is red", "it weighs 2 kg"],
            "q2": ["waterproof up to 10 m", "battery included", "machine washable jacket"]}


@pytest.mark.parametrize("method, norm", [("linear", "none"), ("linear", "min-max"), ("linear", "z-score"),
                                          ("rrf", "none")])
def test_training_and_evaluation_share_one_hybrid_score(method, norm, splade_tiny, caplog):
    """The loss's in-batch hybrid (BROADCAST local: each question against its own contexts) equals the
    hybrid the evaluator ranks a rerank split with, where those contexts are the candidates. RRF has
    no gradient: training fuses with its surrogate, says so, and that is what is compared."""
    cfg = load_config(REPO / "configs" / "quickstart.yaml",
                      ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "PRECISION", "fp32",
                       "SOLVER.BROADCAST", "local", "SOLVER.HYBRID_LOSS_WEIGHT", "1.0", "FUSION.METHOD", method,
                       "FUSION.NORM", norm, "SOLVER.ALPHA", "0.3", "SOLVER.FUNC", "cosine"], dotenv_path=None)
    model, tokenizer = build_model(cfg)
    model.eval()
    with caplog.at_level(logging.INFO, logger="HybridPQA.losses"):
        loss = build_loss(cfg)
    fusion = build_fusion(cfg)
    assert loss.fusion == fusion.surrogate()
    if method == "rrf":
        assert loss.fusion != fusion and "surrogate" in caplog.text
    encoding = build_encoding(cfg)
    contexts = [c for q in QUESTIONS for c in CONTEXTS[q]]
    positive = own_columns(2, 6) & (torch.arange(6) % 3 == 0)[None, :]
    with torch.no_grad():
        q_reps, c_reps = model(tokenize(tokenizer, list(QUESTIONS.values()), encoding.max_length("query")),
                               tokenize(tokenizer, contexts, encoding.max_length("context")))
        training = own_scores(loss.scores(q_reps, c_reps, positive)["hybrid"])  # (2, 3)
        parts = loss(q_reps, c_reps, positive)
    assert torch.isfinite(parts["contrastive_hybrid"])

    data = RankingData("toy", dict(QUESTIONS), {f"{q}-{i}": c for q in QUESTIONS for i, c in enumerate(CONTEXTS[q])},
                       {q: {f"{q}-0": 1} for q in QUESTIONS}, {q: [f"{q}-{i}" for i in range(3)] for q in QUESTIONS})
    ranker = build_ranker(model, tokenizer, cfg, torch.device("cpu"), None)
    ranker.index(data)
    hybrid = ranker.rank(list(QUESTIONS), fusion.surrogate()).runs["hybrid"]
    evaluation = torch.tensor([[hybrid[q][f"{q}-{i}"] for i in range(3)] for q in QUESTIONS])
    assert torch.allclose(training, evaluation, atol=1e-4), (training, evaluation)


def test_global_broadcast_fuses_over_every_in_batch_context():
    """With BROADCAST global a question's scores are normalised over all Q*C columns it is scored on."""
    torch.manual_seed(0)
    dense, sparse = torch.randn(2, 6), torch.rand(2, 6) * 10
    loss = HybridLoss(fusion=Fusion("linear", "min-max", 0.5), broadcast="global")
    fused = loss.fusion.fuse(dense, sparse, loss.columns(torch.zeros(2, 6, dtype=torch.bool)))
    assert torch.allclose(fused, Fusion("linear", "min-max", 0.5).fuse(dense, sparse))
    assert fused.min() >= 0 and fused.max() <= 1
