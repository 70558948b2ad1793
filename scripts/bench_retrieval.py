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
- ours-fp32 / ours-bf16: HybridPQA.evaluation.encode (length-sorted batches, chunked projection,
  max before the activation) in fp32 and with bf16 autocast.
Achieved FLOP/s counts the real (unpadded) tokens' vocabulary projection and encoder layers
analytically, and is compared with the measured peak of a large matmul at the same precision.

Search: exact top-100 for every test query, one query at a time, with the index's scipy
term-at-a-time product, a numba term-at-a-time kernel, and brute force (dense query x dense
document matrix).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp
import torch
from docopt import docopt

from HybridPQA.bench import machine, matmul_peak, median_time
from HybridPQA.config import load_config
from HybridPQA.data.readers import read_beir
from HybridPQA.evaluation.encode import encode
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


@numba.njit(cache=True)
def taat(q_terms, q_weights, indptr, doc_rows, doc_weights, num_docs):
    """Term-at-a-time accumulation over the query terms' posting lists."""
    acc = np.zeros(num_docs, dtype=np.float32)
    for t, w in zip(q_terms, q_weights):
        for p in range(indptr[t], indptr[t + 1]):
            acc[doc_rows[p]] += w * doc_weights[p]
    return acc


def bench_search(index: SparseIndex, queries: sp.csr_matrix, k: int = 100) -> dict:
    m = index.by_term
    indptr, rows, weights = np.asarray(m.indptr), np.asarray(m.indices), np.asarray(m.data)
    dense_docs = m.toarray()
    single = [queries[i] for i in range(queries.shape[0])]

    def scipy_all():
        for q in single:
            index.search(q, k)

    def numba_all():
        for q in single:
            top_k(taat(q.indices, q.data.astype(np.float32), indptr, rows, weights, m.shape[0])[None], k)

    def brute_all():
        for q in single:
            top_k(q.toarray() @ dense_docs.T, k)

    ours = index.search(queries, k)[0]
    numba_ids = np.stack([top_k(taat(q.indices, q.data.astype(np.float32), indptr, rows, weights,
                                     m.shape[0])[None], k)[0][0] for q in single])
    brute = top_k(queries.toarray() @ dense_docs.T, k)[0]
    out = {"queries": len(single), "documents": m.shape[0], "k": k, "index_bytes": index.nbytes,
           "same_top_k_as_brute_force": bool((ours == brute).mean() > 0.999 and (numba_ids == brute).mean() > 0.999)}
    for name, fn in (("scipy", scipy_all), ("numba", numba_all), ("brute_force", brute_all)):
        out[f"{name}_ms_per_query"] = 1000 * median_time(fn, 3) / len(single)
    start = time.perf_counter()
    index.search(queries, k)
    out["scipy_batched_ms_per_query"] = 1000 * (time.perf_counter() - start) / len(single)
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
        vectors = outputs.get("ours-bf16") if "ours-bf16" in outputs else encode(
            model, tokenizer, "context", texts, length, batch, cpu, torch.bfloat16)["sparse"]
        index = SparseIndex.build(vectors, [str(i) for i in range(len(texts))])
        queries = encode(model, tokenizer, "query", list(data.queries.values()), 64, 32, cpu, torch.bfloat16)["sparse"]
    report["search"] = bench_search(index, queries)
    s = report["search"]
    print(f"sparse top-{s['k']} over {s['documents']} docs, one query at a time: scipy {s['scipy_ms_per_query']:.3f} ms, "
          f"numba {s['numba_ms_per_query']:.3f} ms, brute force {s['brute_force_ms_per_query']:.3f} ms "
          f"({s['brute_force_ms_per_query'] / s['scipy_ms_per_query']:.1f}x slower than scipy); batched scipy "
          f"{s['scipy_batched_ms_per_query']:.3f} ms/query; same top-k: {s['same_top_k_as_brute_force']}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
