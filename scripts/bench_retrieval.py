"""Corpus encoding and sparse search speed, against the baselines, in one process.

Usage:
  bench_retrieval.py [--model=DIR] [--data=DIR] [--docs=N] [--length=N] [--batch=N] [--repeats=N] [--skip=LIST] [--index=DIR]

Options:
  --model=DIR     a BERT masked LM [default: models/splade-tiny]
  --data=DIR      a BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv [default: data/raw/scifact]
  --docs=N        encode the first N documents (0 = all) [default: 500]
  --length=N      document truncation, tokens [default: 256]
  --batch=N       documents per batch [default: 32]
  --repeats=N     timed runs per encoder; medians are reported [default: 3]
  --skip=LIST     comma-separated encoders to leave out: plain, st, ours-fp32, ours-bf16 [default: ]
  --index=DIR     time search on this saved sparse index (e.g. <run>/index/test/sparse, with its
                  queries) instead of the documents encoded here

Encoders, on the same documents, model, length and batch size:
- plain: the obvious fp32 loop: batches in corpus order padded to their longest text, full MLM
  logits, log1p(relu(.)), masked max over tokens (torch.inference_mode).
- st: sentence-transformers' SparseEncoder.encode (MLMTransformer + SpladePooling max, log1p_relu).
- ours-fp32 / ours-bf16: HybridPQA.modeling.encode (length-sorted batches, chunked projection,
  max before the activation) in fp32 and with bf16 autocast.
Achieved FLOP/s counts the real (unpadded) tokens' vocabulary projection and encoder layers
analytically, and is compared with the measured peak of a large matmul at the same precision.

Search: exact top-100 for every test query, one query at a time, with the index (a numba
term-at-a-time kernel), scipy's CSR x CSC product over the same posting lists, and brute force
(dense query x dense document matrix); then all queries at once through the index.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from docopt import docopt

from HybridPQA.bench import auto_precision, machine, matmul_peak, median_time
from HybridPQA.config import load_config
from HybridPQA.data.readers import read_beir
from HybridPQA.modeling.encode import encode
from HybridPQA.modeling import build_model
from HybridPQA.retrieval.index import SparseIndex, load_queries, top_k


def plain_encode(mlm, tokenizer, texts, length, batch_size) -> sp.csr_matrix:
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=length,
                              return_tensors="pt", return_token_type_ids=False)
            logits = mlm(**batch).logits
            weights = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
            rows.append(sp.csr_matrix(weights.max(dim=1).values.numpy()))
    return sp.vstack(rows).tocsr()


def st_encoder(model_dir: str, length: int):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    mlm = Transformer(model_dir, transformer_task="fill-mask", max_seq_length=length)
    return SparseEncoder(modules=[mlm, SpladePooling("max", activation_function="log1p_relu")], device="cpu")


def encoder_flops(mlm, tokenizer, texts, length) -> float:
    """Forward FLOPs on the real tokens: layers (dense matmuls + attention) and the MLM head."""
    c = mlm.config
    lengths = np.array([len(x) for x in tokenizer(texts, truncation=True, max_length=length)["input_ids"]])
    h, inter, vocab = c.hidden_size, c.intermediate_size, c.vocab_size
    per_token_layer = 2 * (4 * h * h + 2 * h * inter)
    attention = 2 * 2 * h * (lengths ** 2).sum()  # QK^T and AV, per layer
    tokens = lengths.sum()
    head = tokens * 2 * (h * h + h * vocab)
    return float(c.num_hidden_layers * (tokens * per_token_layer + attention) + head)


def bench_search(index: SparseIndex, queries: sp.csr_matrix, k: int = 100) -> dict:
    """ms per query, one query at a time: the index (numba), scipy's CSR x CSC product, brute force."""
    by_term_t = index.by_term.T.tocsr()  # (V, N): scipy's inverted-index product
    dense_docs = index.by_term.toarray()
    single = [queries[i] for i in range(queries.shape[0])]
    ways = {
        "index": lambda q: index.search(q, k),
        "scipy": lambda q: top_k((q @ by_term_t).toarray(), k),
        "brute_force": lambda q: top_k(q.toarray() @ dense_docs.T, k),
    }
    reference = ways["brute_force"](queries)[0]
    out = {"queries": len(single), "documents": index.by_term.shape[0], "k": k, "index_bytes": index.nbytes}
    for name, way in ways.items():
        out[f"{name}_same_top_k_as_brute_force"] = float((way(queries)[0] == reference).mean())
        out[f"{name}_ms_per_query"] = 1000 * median_time(lambda way=way: [way(q) for q in single], 3) / len(single)
    out["index_batched_ms_per_query"] = 1000 * median_time(lambda: index.search(queries, k), 3) / len(single)
    return out


def versions() -> dict:
    import importlib.metadata as md

    return {name: md.version(name) for name in ("transformers", "scipy", "numba", "sentence-transformers")
            if _installed(name)}


def _installed(name: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


def main(argv=None) -> dict:
    args = docopt(__doc__, argv=argv)
    length, batch, repeats = int(args["--length"]), int(args["--batch"]), int(args["--repeats"])
    skip = set(filter(None, args["--skip"].split(",")))
    data = read_beir(Path(args["--data"]) / "qrels" / "test.tsv")
    texts = list(data.docs.values())[:int(args["--docs"]) or None]
    cfg = load_config(None, ["PRETRAINED_MODEL_TYPE", args["--model"], "MODEL.TOP_K", "None",
                             "MODEL.VOCAB_MASK", "['special']", "SHARED_ENCODER", "True", "BIENCODER_TYPE", "sparse"],
                      dotenv_path=None)
    model, tokenizer = build_model(cfg)
    mlm = model.query_encoder.mlm.eval()
    flops = encoder_flops(mlm, tokenizer, texts, length)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    report = {"machine": machine(), "versions": versions(),
              "documents": len(texts), "length": length, "batch": batch, "repeats": repeats,
              "encoder_tflop": flops / 1e12, "peak_tflops": {k: v / 1e12 for k, v in peaks.items()}, "encode": {}}
    cpu = torch.device("cpu")
    report["precision"] = auto_precision(model, cpu)
    auto = torch.bfloat16 if report["precision"]["auto"] == "bf16" else None
    encoders = {
        "plain": (lambda: plain_encode(mlm, tokenizer, texts, length, batch), "fp32"),
        "ours-fp32": (lambda: encode(model, tokenizer, "context", texts, length, batch, cpu, None)["sparse"], "fp32"),
        "ours-bf16": (lambda: encode(model, tokenizer, "context", texts, length, batch, cpu, torch.bfloat16)["sparse"],
                      "bf16"),
    }
    if "st" not in skip and not _installed("sentence-transformers"):
        print("sentence-transformers is not installed (pip install -r requirements/bench.txt): skipping st")
        skip.add("st")
    if "st" not in skip:
        st = st_encoder(args["--model"], length)
        encoders["st"] = (lambda: st.encode(texts, batch_size=batch, show_progress_bar=False), "fp32")
    outputs = {}
    for name, (fn, precision) in encoders.items():
        if name in skip:
            continue
        outputs[name] = fn()  # warm-up, and the vectors for the agreement check
        seconds = median_time(fn, repeats, warmup=0)
        report["encode"][name] = {"seconds": seconds, "docs_per_s": len(texts) / seconds,
                                  "tflops": flops / seconds / 1e12,
                                  "fraction_of_peak": flops / seconds / peaks[precision]}
        print(f"{name:10s} {seconds:7.2f} s  {len(texts) / seconds:7.1f} docs/s  "
              f"{flops / seconds / 1e12:.3f} TFLOP/s = {100 * flops / seconds / peaks[precision]:.0f}% of the "
              f"{precision} matmul peak ({peaks[precision] / 1e12:.2f})", flush=True)
    for base in ("plain", "st"):
        for ours in ("ours-fp32", "ours-bf16"):
            if base in report["encode"] and ours in report["encode"]:
                ratio = report["encode"][base]["seconds"] / report["encode"][ours]["seconds"]
                report["encode"][f"{ours} / {base} speed-up"] = ratio
                print(f"{ours} vs {base}: {ratio:.2f}x faster")
    if "ours-fp32" in report["encode"] and "ours-bf16" in report["encode"]:
        ratio = report["encode"]["ours-fp32"]["seconds"] / report["encode"]["ours-bf16"]["seconds"]
        report["encode"]["bf16 / fp32 speed"] = ratio
        print(f"ours bf16 / fp32 speed: {ratio:.2f}x (PRECISION auto picked {report['precision']['auto']})")
    if "plain" in outputs and "ours-fp32" in outputs:
        diff = abs(outputs["plain"] - outputs["ours-fp32"]).max()
        report["max_abs_diff_ours_fp32_vs_plain"] = float(diff)
        print(f"max |ours fp32 - plain| = {diff:.2e}")
    if args["--index"]:
        index = SparseIndex.load(Path(args["--index"]))
        saved = load_queries(Path(args["--index"]))
        if saved is None:
            raise SystemExit(f"error: {args['--index']} has no queries.npz; evaluate a split to save them")
        queries = saved[1]
    else:
        name = "ours-bf16" if auto is not None else "ours-fp32"
        vectors = outputs[name] if name in outputs else encode(model, tokenizer, "context", texts, length, batch, cpu,
                                                               auto)["sparse"]
        index = SparseIndex.build(vectors, [str(i) for i in range(len(texts))])
        queries = encode(model, tokenizer, "query", list(data.queries.values()), 64, 32, cpu, auto)["sparse"]
    report["search"] = bench_search(index, queries)
    s = report["search"]
    print(f"sparse top-{s['k']} over {s['documents']} docs, one query at a time: index (numba) "
          f"{s['index_ms_per_query']:.3f} ms, scipy {s['scipy_ms_per_query']:.3f} ms "
          f"({s['scipy_ms_per_query'] / s['index_ms_per_query']:.1f}x), brute force {s['brute_force_ms_per_query']:.3f} ms "
          f"({s['brute_force_ms_per_query'] / s['index_ms_per_query']:.1f}x); all {s['queries']} at once "
          f"{s['index_batched_ms_per_query']:.3f} ms/query; top-k equal to brute force: index "
          f"{s['index_same_top_k_as_brute_force']:.4f}, scipy {s['scipy_same_top_k_as_brute_force']:.4f}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
