"""FLOPs per query-candidate pair of the hybrid and the cross-encoder at another model size.

Usage:
  flops_at_scale.py --table=DIR [--hybrid=EXP] [--cross=EXP] [--hidden=N] [--layers=N] [--heads=N]

Options:
  --table=DIR   a reproduced table, e.g. output/paper/product-qa
  --hybrid=EXP  the hybrid row [default: hybrid]
  --cross=EXP   the cross-encoder row [default: cross]
  --hidden=N    hidden size [default: 768]
  --layers=N    layers [default: 12]
  --heads=N     attention heads [default: 12]

With splade-tiny (hidden 128) the sparse head's vocabulary projection (128 x 30,522 per token)
costs ~10x the two transformer layers, so the hybrid's query encoding is dear next to a
cross-encoder pass. This script takes the table's measured median lengths and candidates per
query and counts both models with calflops at bert-base size (random weights: only shapes matter).
"""
import json
from pathlib import Path

import torch
from calflops import calculate_flops
from docopt import docopt
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from HybridPQA.modeling.encoder import HybridEncoder
from HybridPQA.modeling.heads import DenseHead, SpladeHead


def gflops(model: torch.nn.Module, tokens: int) -> float:
    batch = {"input_ids": torch.randint(1000, 2000, (1, tokens)), "attention_mask": torch.ones(1, tokens, dtype=torch.long)}
    return calculate_flops(model=model, kwargs=batch, print_results=False, output_as_string=False)[0] / 1e9


def main() -> None:
    args = docopt(__doc__)
    table = Path(args["--table"])
    hybrid = json.loads((table / args["--hybrid"] / "results" / "test.json").read_text())["efficiency"]["hybrid"]
    cross = json.loads((table / args["--cross"] / "results" / "test.json").read_text())["efficiency"]["cross"]
    config = BertConfig(hidden_size=int(args["--hidden"]), num_hidden_layers=int(args["--layers"]),
                        num_attention_heads=int(args["--heads"]), intermediate_size=4 * int(args["--hidden"]))
    encoder = HybridEncoder(BertForMaskedLM(config), DenseHead(config.hidden_size),
                            SpladeHead(torch.ones(config.vocab_size, dtype=torch.bool))).eval()
    query = gflops(encoder, hybrid["median_query_tokens"])
    pair = gflops(BertForSequenceClassification(BertConfig(**{**config.to_dict(), "num_labels": 1})).eval(),
                  cross["median_pair_tokens"])
    per_pair = query / hybrid["candidates_per_query"]
    print(f"hidden {config.hidden_size}, {config.num_hidden_layers} layers; query {hybrid['median_query_tokens']} "
          f"tokens, pair {cross['median_pair_tokens']} tokens, {hybrid['candidates_per_query']:.2f} candidates/query")
    print(f"measured (splade-tiny): hybrid {hybrid['gflops_per_pair']:.4f} GFLOPs/pair, cross {cross['gflops_per_pair']:.4f}"
          f" -> {1 - hybrid['gflops_per_pair'] / cross['gflops_per_pair']:.0%} fewer")
    print(f"at this size:           hybrid {per_pair:.4f} GFLOPs/pair (query {query:.3f}), cross {pair:.4f} -> "
          f"{1 - per_pair / pair:.0%} fewer ({1 - query / pair:.0%} fewer even unshared)")


if __name__ == "__main__":
    main()
