"""Peak memory and time of one training step, with and without GradCache (SOLVER.GRAD_CACHE_CHUNK).

Usage:
  bench_grad_cache.py [--model=DIR] [--data=DIR] [--batches=LIST] [--chunk=N] [--length=N]
  bench_grad_cache.py --child BATCH CHUNK [--model=DIR] [--data=DIR] [--length=N]

Options:
  --model=DIR      a BERT masked LM [default: models/splade-tiny]
  --data=DIR       a prepared product-QA folder (train.json) [default: data/product-qa]
  --batches=LIST   questions per batch, comma-separated [default: 8,64]
  --chunk=N        GradCache chunk, questions [default: 8]
  --length=N       context truncation, tokens [default: 256]

Each setting runs in its own process (the quickstart hybrid, 5 contexts per question, fp32): one
warm-up step on 2 questions, then the measured step. Peak memory is the growth of the process's
maximum resident set over the warm-up, so it counts the step's activations and gradients, not the
model. Printed against the uncached step of the smallest batch, measured in the same run.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from docopt import docopt

REPO = Path(__file__).resolve().parents[1]


def child(batch: int, chunk: int, model: str, data: str, length: int) -> dict:
    import torch

    from HybridPQA.config import load_config
    from HybridPQA.data import build_split
    from HybridPQA.data.training import TrainingSet
    from HybridPQA.engine.step import cached_backward, loss_parts
    from HybridPQA.engine.schedule import vector_sizes
    from HybridPQA.losses import build_loss
    from HybridPQA.modeling import build_model
    from HybridPQA.modeling.encoding import build_encoding

    cfg = load_config(REPO / "configs" / "quickstart.yaml", [
        "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", model, "PRECISION", "fp32", "RETRIEVER.MODEL.CONTEXT_MAX_LENGTH",
        str(length), "SOLVER.TRAIN_BATCH_SIZE", str(batch)], dotenv_path=None)
    model_, tokenizer = build_model(cfg)
    model_.train()
    loss, encoding, cpu = build_loss(cfg, vector_sizes(model_)), build_encoding(cfg), torch.device("cpu")
    train = TrainingSet(build_split(Path(data) / "train.json", cfg.RETRIEVER.DATA), batch, 1, 5, cfg.SEED)

    def step(b, cached: bool) -> None:
        if cached:
            cached_backward(model_, tokenizer, b, loss, encoding, cpu, 0, None, 0, chunk)
        else:
            parts, _ = loss_parts(model_, tokenizer, b, loss, encoding, cpu, 0, None)
            sum(parts.values()).backward()
        model_.zero_grad(set_to_none=False)  # gradient buffers stay allocated, as in training

    warm = TrainingSet(build_split(Path(data) / "train.json", cfg.RETRIEVER.DATA), 2, 1, 5, cfg.SEED).batch(0, 0)
    step(warm, chunk > 0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    step(train.batch(0, 0), chunk > 0)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"batch": batch, "chunk": chunk or None, "peak_mb": (after - before) / 1024, "seconds": seconds}


def main() -> None:
    args = docopt(__doc__)
    common = [f"--model={args['--model']}", f"--data={args['--data']}", f"--length={args['--length']}"]
    if args["--child"]:
        print(json.dumps(child(int(args["BATCH"]), int(args["CHUNK"]), args["--model"], args["--data"],
                               int(args["--length"]))))
        return
    batches = [int(b) for b in args["--batches"].split(",")]
    settings = [(b, 0) for b in batches] + [(b, int(args["--chunk"])) for b in batches if b > int(args["--chunk"])]
    rows = []
    for batch, chunk in settings:
        out = subprocess.run([sys.executable, __file__, "--child", str(batch), str(chunk), *common], check=True,
                             capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]
    print(f"{'batch':>6} {'chunk':>6} {'peak MB':>9} {'x base':>7} {'step s':>7} {'x base':>7}")
    for r in rows:
        print(f"{r['batch']:>6} {str(r['chunk'] or '-'):>6} {r['peak_mb']:>9.0f} {r['peak_mb'] / base['peak_mb']:>7.2f} "
              f"{r['seconds']:>7.2f} {r['seconds'] / base['seconds']:>7.2f}")


if __name__ == "__main__":
    main()
