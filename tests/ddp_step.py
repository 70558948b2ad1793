"""One training step's loss parts and gradients, written to a file; run under torchrun by
test_distributed.py (2 gloo processes), or imported there for the single-process reference.

    torchrun --nproc_per_node=2 tests/ddp_step.py MODEL DATA OUT.pt [KEY VALUE ...]
"""
import sys

import torch

from HybridPQA.config import load_config
from HybridPQA.data import build_split
from HybridPQA.data.training import TrainingSet
from HybridPQA.distributed import build_distributed, wrap
from HybridPQA.engine.step import cached_backward
from HybridPQA.engine.step import loss_parts
from HybridPQA.losses import HybridLoss
from HybridPQA.losses.parts import Contrastive, Flops
from HybridPQA.modeling import build_model
from HybridPQA.modeling.encoding import build_encoding
from HybridPQA.scoring import build_fusion


def config(model: str, *overrides: str):
    return load_config(None, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", model, "RETRIEVER.MODEL.DROPOUT", "0.0",
                              "SOLVER.TRAIN_BATCH_SIZE", "4", "SOLVER.FUNC", "cosine", "SOLVER.TEMPERATURE", "0.05",
                              "DATA.COUNT", "24", "NUM_THREADS", "1", "DEVICE", "cpu",
                              "DATA.NORMALIZE", "True", "DATA.INSERT_SOURCE", "True", "DATA.FLATTEN_ATTRIBUTE", "True",
                              *overrides], dotenv_path=None)  # product-QA text options, as its configs set them


def step(cfg, path_data: str) -> tuple[dict, dict]:
    """({part: value}, {parameter: gradient}) of batch 0 at step 0, lambdas at full strength."""
    torch.manual_seed(0)
    ranks = build_distributed(cfg)
    model, tokenizer = build_model(cfg)
    train = build_split(f"{path_data}/{cfg.RETRIEVER.DATA.TRAIN_DATA_PATH}", cfg.RETRIEVER.DATA)
    batch = TrainingSet(train, cfg.RETRIEVER.SOLVER.TRAIN_BATCH_SIZE, 1, 5, cfg.SEED).batch(0, 0)
    net = wrap(model, ranks, torch.device("cpu"))
    s = cfg.RETRIEVER.SOLVER
    loss = HybridLoss(Contrastive(s.TEMPERATURE, s.BROADCAST), build_fusion(cfg), [Flops(1e-2, 3e-3, 1)], func=s.FUNC,
                      broadcast=s.BROADCAST)  # step 1: the lambdas at full strength
    if s.GRAD_CACHE_CHUNK:  # GradCache: the backward runs inside, chunk by chunk
        parts, _ = cached_backward(net, tokenizer, batch, loss, build_encoding(cfg), torch.device("cpu"), 1, None, 0,
                                   s.GRAD_CACHE_CHUNK, ranks=ranks)
    else:
        parts, _ = loss_parts(net, tokenizer, batch, loss, build_encoding(cfg), torch.device("cpu"), 1, None, ranks)
        sum(parts.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.item() for k, v in parts.items()}, grads


if __name__ == "__main__":
    model, data, out, *overrides = sys.argv[1:]
    parts, grads = step(config(model, "DISTRIBUTED", "True", *overrides), data)
    if torch.distributed.get_rank() == 0:
        torch.save({"parts": parts, "grads": grads, "world": torch.distributed.get_world_size()}, out)
    torch.distributed.destroy_process_group()
