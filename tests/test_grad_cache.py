"""GradCache (SOLVER.GRAD_CACHE_CHUNK): the cached step's gradients are the uncached step's."""
from pathlib import Path

import pytest
import torch

from HybridPQA.config import load_config
from HybridPQA.data.readers import RankingData
from HybridPQA.data.training import TrainingSet
from HybridPQA.engine.step import cached_backward, loss_parts
from HybridPQA.engine.schedule import vector_sizes
from HybridPQA.losses import build_loss
from HybridPQA.modeling import build_model
from HybridPQA.modeling.encoding import build_encoding

REPO = Path(__file__).resolve().parents[1]

QUESTIONS = ["does it fit a frigidaire", "how long does the battery last", "is the kettle stainless steel",
             "can i wash it in the dishwasher", "what size is the drawer", "does it come with a charger"]
DOCS = ["this crisper drawer fits frigidaire refrigerators", "the battery lasts about ten hours",
        "a stainless steel kettle of 1.7 litres", "dishwasher safe, top rack only", "the drawer is 30 by 50 cm",
        "a usb charger is included", "red colour, plastic lid", "ships in two days", "made in germany",
        "weighs two pounds", "five year warranty", "works with 110 volts"]


@pytest.mark.parametrize("objective, model_type", [("contrastive", "hybrid"), ("cosent", "hybrid"),
                                                   ("softmax", "dense")])
def test_cached_gradients_equal_the_uncached_step(objective, model_type, splade_tiny):
    cfg = load_config(None, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "RETRIEVER.MODEL.DROPOUT", "0.0",
                             "RETRIEVER.MODEL.BIENCODER_TYPE", model_type, "RETRIEVER.SOLVER.LOSS", objective,
                             "RETRIEVER.SOLVER.FUNC", "cosine", "RETRIEVER.SOLVER.TEMPERATURE", "0.05",
                             "RETRIEVER.SOLVER.HYBRID_LOSS_WEIGHT", "0.0" if objective == "softmax" else "1.0"])
    data = RankingData("train", {f"q{i}": q for i, q in enumerate(QUESTIONS)}, {f"d{i}": d for i, d in enumerate(DOCS)},
                       {f"q{i}": {f"d{i}": 1} for i in range(len(QUESTIONS))})
    batch = TrainingSet(data, 6, 1, 2, seed=0).batch(0, 0)
    model, tokenizer = build_model(cfg)
    model.train()
    torch.manual_seed(0)
    loss = build_loss(cfg, vector_sizes(model))
    encoding, cpu = build_encoding(cfg), torch.device("cpu")
    parts, _ = loss_parts(model, tokenizer, batch, loss, encoding, cpu, 100, None)
    sum(parts.values()).backward()
    expected = {n: p.grad.clone() for n, p in [*model.named_parameters(), *loss.named_parameters()]
                if p.grad is not None}
    model.zero_grad()
    loss.zero_grad()
    cached, _ = cached_backward(model, tokenizer, batch, loss, encoding, cpu, 100, None, 0, chunk=2)
    assert cached.keys() == parts.keys()
    assert all(torch.allclose(cached[k], parts[k], atol=1e-5) for k in parts)
    got = {n: p.grad for n, p in [*model.named_parameters(), *loss.named_parameters()] if p.grad is not None}
    assert got.keys() == expected.keys() and len(got) > 20
    scale = max(g.abs().max().item() for g in expected.values())  # key biases' true gradient is 0: noise only
    worst = max(((got[n] - g).abs().max() / max(g.abs().max().item(), 1e-3 * scale)).item() for n, g in expected.items())
    assert worst < 1e-3


@pytest.mark.slow  # trains or evaluates end to end
def test_training_with_grad_cache_follows_the_uncached_run(tmp_path, splade_tiny, product_qa):
    """3 optimizer steps through the training loop (fp32, no dropout): the same weights within fp error."""
    from HybridPQA.pipeline import train_and_test
    from HybridPQA.rundir import RunDir

    weights = {}
    for name, chunk in (("plain", "None"), ("cached", "2")):
        cfg = load_config(REPO / "configs" / "quickstart.yaml", [
            "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "EXP", name, "PRECISION", "fp32",
            "RETRIEVER.MODEL.DROPOUT", "0.0", "SOLVER.TOTAL_TRAIN_STEPS", "3", "SOLVER.NUM_STEP_PER_EVAL", "3",
            "DATA.COUNT", "24", "SOLVER.TRAIN_BATCH_SIZE", "4", "RETRIEVER.DO_TEST", "False",
            "RETRIEVER.DATA.VAL_DATA_PATH", "None", "SOLVER.GRAD_CACHE_CHUNK", chunk], dotenv_path=None)
        run_dir = RunDir.at(tmp_path, cfg.EXP).prepare(cfg)
        train_and_test(cfg, run_dir, product_qa)
        weights[name] = build_model(cfg, checkpoint=run_dir / "checkpoints" / "last")[0].state_dict()
    worst = max((weights["cached"][k] - v).abs().max().item() for k, v in weights["plain"].items()
                if v.is_floating_point())
    assert 0 < max((weights["plain"][k] - v).abs().max().item() for k, v in build_model(cfg)[0].state_dict().items()
                   if v.is_floating_point())  # training moved the weights
    assert worst < 1e-5
