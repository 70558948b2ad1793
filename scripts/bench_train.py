"""Training throughput of the hybrid step against a plain step written the obvious way.

Usage:
  bench_train.py [--model=DIR] [--steps=N] [--repeats=N] [--length=N] [--precisions=LIST]

Options:
  --model=DIR         masked LM to train [default: models/splade-tiny]
  --steps=N           optimizer steps per measurement [default: 10]
  --repeats=N         measurements per setting; the median is reported [default: 3]
  --length=N          tokens per text (padded to it, as in the paper) [default: 128]
  --precisions=LIST   fp32, bf16 [default: fp32,bf16]

Both steps train a hybrid BiEncoder on 8 real product-QA questions x 5 contexts with the same
loss. The plain step builds the full (B, L, V) MLM logits, applies log1p(relu(.)), masks padding
and takes the max; ours (MaxPooledProjection) projects the vocabulary in chunks, keeps only the
argmax and back-propagates sparsely. "Dense-equivalent MFU" = 3 x forward FLOPs (calflops) per
second over the measured peak of a large matmul at the same precision; since our backward skips
most of the vocabulary projection's dense-equivalent work, it can exceed 100 %.
"""
import json
import statistics
import time
from pathlib import Path

import torch
from calflops import calculate_flops
from docopt import docopt

from HybridPQA.bench import machine, matmul_peak
from HybridPQA.config import load_config
from HybridPQA.data import build_split
from HybridPQA.data.training import TrainingSet
from HybridPQA.engine.runtime import autocast
from HybridPQA.losses import hybrid_loss
from HybridPQA.modeling import build_model


def plain_sparse(encoder, input_ids, attention_mask):
    """The obvious SPLADE: full logits, activation on all of them, then the masked max."""
    hidden = encoder.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    weights = torch.log1p(torch.relu(encoder.mlm.cls(hidden))) * attention_mask.unsqueeze(-1)
    weights = weights.max(dim=1).values * encoder.sparse_head.vocab_mask
    values, index = weights.topk(encoder.sparse_head.top_k, dim=-1)
    return {"dense": encoder.dense_head(hidden, attention_mask),
            "sparse": torch.zeros_like(weights).scatter(-1, index, values)}


def measure(model, batches, tokenizer, length, dtype, plain: bool, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    device = torch.device("cpu")
    model.train()

    def encode(side, texts):
        batch = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt",
                          return_token_type_ids=False)
        encoder = model.query_encoder if side == "query" else model.context_encoder
        return plain_sparse(encoder, **batch) if plain else encoder(**batch)

    start = time.perf_counter()
    for step in range(steps):
        batch = batches[step % len(batches)]
        with autocast(device, dtype):
            parts = hybrid_loss(encode("query", batch.questions), encode("context", batch.contexts), batch.positive,
                                temperature=0.05, broadcast="global", func="cosine", alpha=0.5, hybrid_weight=0.0,
                                lambda_q=3e-4, lambda_d=1e-4)
        sum(parts.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps / (time.perf_counter() - start)


def main(argv=None) -> dict:
    args = docopt(__doc__, argv=argv)
    steps, repeats, length = int(args["--steps"]), int(args["--repeats"]), int(args["--length"])
    cfg = load_config(Path(__file__).parents[1] / "configs" / "quickstart.yaml",
                      ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", args["--model"]], dotenv_path=None)
    model, tokenizer = build_model(cfg)
    train = build_split(Path(__file__).parents[1] / "data" / "product-qa" / "train.json", cfg.RETRIEVER.DATA)
    batches = [TrainingSet(train, 8, 1, 5, 0).batch(0, i) for i in range(steps)]
    sample = tokenizer(["x"] * 1, padding="max_length", max_length=length, return_tensors="pt", return_token_type_ids=False)
    fwd = calculate_flops(model=model.query_encoder, kwargs=dict(sample), print_results=False, output_as_string=False)[0]
    step_flops = 3 * fwd * 8 * (1 + 5)  # forward + backward (~2x forward), 48 texts per step
    report = {"machine": machine(), "length": length,
              "gflops_per_step": step_flops / 1e9, "results": {}}
    for name in args["--precisions"].split(","):
        dtype = {"fp32": None, "bf16": torch.bfloat16}[name]
        peak = matmul_peak(dtype or torch.float32)
        for plain in (True, False):
            rates = [measure(model, batches, tokenizer, length, dtype, plain, steps) for _ in range(repeats)]
            rate = statistics.median(rates)
            key = f"{name} {'plain' if plain else 'ours'}"
            report["results"][key] = {"steps_per_s": rate, "questions_per_s": 8 * rate,
                                      "tokens_per_s": 48 * length * rate,
                                      "mfu": step_flops * rate / peak, "peak_tflops": peak / 1e12}
            print(f"{key:12s} {8 * rate:7.2f} questions/s  {48 * length * rate:9.0f} tokens/s  "
                  f"dense-equivalent MFU {100 * step_flops * rate / peak:5.1f}% of {peak / 1e12:.2f} TFLOP/s")
        ours, plain_rate = report["results"][f"{name} ours"], report["results"][f"{name} plain"]
        print(f"{name}: ours / plain = {ours['steps_per_s'] / plain_rate['steps_per_s']:.2f}x")
    if {"fp32 ours", "bf16 ours"} <= set(report["results"]):
        ratio = report["results"]["bf16 ours"]["steps_per_s"] / report["results"]["fp32 ours"]["steps_per_s"]
        print(f"ours: bf16 / fp32 = {ratio:.2f}x")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
