"""Query encoding cost, one query at a time: inference-free (static) queries against the transformer.

Usage:
  bench_query_encoders.py [--model=DIR] [--data=DIR] [--queries=N] [--repeats=N]

Options:
  --model=DIR     a BERT masked LM [default: models/splade-tiny]
  --data=DIR      a BEIR folder with queries.jsonl [default: data/raw/scifact]
  --queries=N     encode the first N queries [default: 200]
  --repeats=N     timed passes over the queries; medians are reported [default: 3]

Three query sides of one hybrid model, each timed from text to vectors (tokenizer included), one
query at a time in fp32, as a search engine sees them:
- transformer: the plain hybrid's query encoder (backbone + dense CLS + SPLADE head);
- static: QUERY_ENCODER static (IDF-initialised term weights + mean token embedding);
- static+transformer-dense: static sparse weights, the dense side a transformer's CLS.
GFLOPs per query come from calflops at the median query length. The ratio is transformer / static.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from calflops import calculate_flops
from docopt import docopt

from HybridPQA.bench import machine
from HybridPQA.config import load_config
from HybridPQA.modeling import build_model, tokenize
from HybridPQA.modeling.static import init_static_queries


def per_query_ms(model, tokenizer, queries: list[str], repeats: int) -> list[float]:
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            for text in queries:
                start = time.perf_counter()
                model.encode("query", **tokenize(tokenizer, [text], 64))
                times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    args = docopt(__doc__)
    queries = [json.loads(line)["text"] for line in (Path(args["--data"]) / "queries.jsonl").open()]
    queries = queries[:int(args["--queries"])]
    corpus = [json.loads(line)["text"] for _, line in zip(range(2000), (Path(args["--data"]) / "corpus.jsonl").open())]
    print(json.dumps(machine()))
    setups = {"transformer": [], "static": ["RETRIEVER.MODEL.QUERY_ENCODER", "static"],
              "static+transformer-dense": ["RETRIEVER.MODEL.QUERY_ENCODER", "static",
                                           "RETRIEVER.MODEL.STATIC_DENSE", "transformer"]}
    results = {}
    for name, overrides in setups.items():
        cfg = load_config(None, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", args["--model"], *overrides], dotenv_path=None)
        model, tokenizer = build_model(cfg)
        init_static_queries(model, tokenizer, corpus, 256)
        model.eval()
        per_query_ms(model, tokenizer, queries[:10], 1)  # warm-up
        times = per_query_ms(model, tokenizer, queries, int(args["--repeats"]))
        median_len = int(statistics.median(len(tokenizer(q)["input_ids"]) for q in queries))
        batch = tokenize(tokenizer, ["x " * (median_len - 2)], 64)
        flops, _, _ = calculate_flops(model=model.query_encoder, kwargs=dict(batch), print_results=False,
                                      output_as_string=False)
        results[name] = {"p50_ms": statistics.median(times), "p95_ms": sorted(times)[int(0.95 * len(times))],
                         "gflops_per_query": flops / 1e9}
    base = results["transformer"]["p50_ms"]
    print(f"{'query side':<26} {'p50 ms':>8} {'p95 ms':>8} {'GFLOPs':>8} {'speed-up':>9}")
    for name, r in results.items():
        print(f"{name:<26} {r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['gflops_per_query']:>8.4f} "
              f"{base / r['p50_ms']:>8.1f}x")


if __name__ == "__main__":
    main()
