"""Corpus encoding and sparse search speed, against the baselines, in one process.

Usage:
  bench_retrieval.py [--model=DIR] [--head=NAME] [--data=DIR] [--docs=N] [--length=N] [--batch=N] [--repeats=N] [--skip=LIST] [--index=DIR]

Options:
  --model=DIR     a BERT masked LM, or a sentence encoder without an MLM head (all-MiniLM-L6-v2: it gets
                  a new head, untrained, which costs what a trained one does) [default: models/splade-tiny]
  --head=NAME     what is encoded: sparse, dense (the model's own pooling) or hybrid (both, one pass)
                  [default: sparse]
  --data=DIR      a BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv [default: data/raw/scifact]
  --docs=N        encode the first N documents (0 = all) [default: 500]
  --length=N      document truncation, tokens [default: 256]
  --batch=N       documents per batch [default: 32]
  --repeats=N     timed runs per encoder; medians are reported [default: 3]
  --skip=LIST     comma-separated encoders to leave out: plain, st, ours-fp32, ours-bf16 [default: ]
  --index=DIR     time search on this saved sparse index (e.g. <run>/index/test/sparse, with its
                  queries) instead of the documents encoded here

Encoders, on the same documents, model, length and batch size:
- plain: the obvious fp32 loop: batches in corpus order padded to their longest text; sparse: full
  MLM logits, log1p(relu(.)), masked max over tokens; dense: the backbone's last layer pooled;
  hybrid: both from one forward pass (torch.inference_mode).
- st: sentence-transformers; sparse: SparseEncoder.encode_document (MLMTransformer + SpladePooling
  max, log(1 + relu)); dense: SentenceTransformer.encode with the model's own modules; hybrid: both,
  two passes (sentence-transformers has no model that gives both).
- ours-fp32 / ours-bf16: HybridPQA.modeling.encode (length-sorted batches, chunked projection,
  max before the activation) in fp32 and with bf16 autocast.
Achieved FLOP/s counts the real (unpadded) tokens' encoder layers (and, for sparse and hybrid, the
vocabulary projection) analytically, and is compared with the measured peak of a large matmul at
the same precision. "Where the time goes" times, at the precision PRECISION auto picks, the
tokenizer, the backbone + pooling (dense only) and the vocabulary projection (sparse only minus
that) over the same documents.

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

from HybridPQA.bench import auto_precision, machine, matmul_peaks, median_time
from HybridPQA.config import load_config
from HybridPQA.data.readers import read_beir
from HybridPQA.modeling.encode import encode
from HybridPQA.modeling import build_model
from HybridPQA.modeling.pretrained import model_kind
from HybridPQA.retrieval.index import SparseIndex, load_queries
from HybridPQA.retrieval.kernels import top_k


def plain_encode(mlm, tokenizer, texts, length, batch_size, head: str, pooling: str) -> dict:
    """{head: vectors}: one fp32 forward pass per batch, computed the obvious way."""
    out = {"sparse": [], "dense": []}
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=length,
                              return_tensors="pt", return_token_type_ids=False)
            mask = batch["attention_mask"].unsqueeze(-1)
            if head == "dense":
                hidden = mlm.base_model(**batch).last_hidden_state
            else:
                result = mlm(**batch, output_hidden_states=head == "hybrid")
                weights = torch.log1p(torch.relu(result.logits)) * mask
                out["sparse"].append(sp.csr_matrix(weights.max(dim=1).values.numpy()))
                hidden = result.hidden_states[-1] if head == "hybrid" else None
            if hidden is not None:
                pooled = hidden[:, 0] if pooling == "cls" else (hidden * mask).sum(1) / mask.sum(1)
                out["dense"].append(pooled.numpy())
    return {name: sp.vstack(rows).tocsr() if name == "sparse" else np.concatenate(rows)
            for name, rows in out.items() if rows}


def st_encoders(model_dir: str, length: int, head: str) -> dict:
    """{head: encode(texts, batch_size)} with sentence-transformers, one model per head."""
    from sentence_transformers import SentenceTransformer, SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    out = {}
    if head in ("sparse", "hybrid"):
        mlm = Transformer(model_dir, transformer_task="fill-mask", max_seq_length=length)
        sparse = SparseEncoder(modules=[mlm, SpladePooling("max")], device="cpu")
        out["sparse"] = lambda texts, b: sparse.encode_document(texts, batch_size=b, show_progress_bar=False)
    if head in ("dense", "hybrid"):
        dense = SentenceTransformer(model_dir, device="cpu")
        dense.max_seq_length = length
        out["dense"] = lambda texts, b: dense.encode(texts, batch_size=b, show_progress_bar=False)
    return out


def encoder_flops(mlm, tokenizer, texts, length, head: str = "sparse") -> float:
    """Forward FLOPs on the real tokens: layers (dense matmuls + attention) and, but for the dense
    head alone, the MLM head."""
    c = mlm.config
    lengths = np.array([len(x) for x in tokenizer(texts, truncation=True, max_length=length)["input_ids"]])
    h, inter, vocab = c.hidden_size, c.intermediate_size, c.vocab_size
    per_token_layer = 2 * (4 * h * h + 2 * h * inter)
    attention = 2 * 2 * h * (lengths ** 2).sum()  # QK^T and AV, per layer
    tokens = lengths.sum()
    head = tokens * 2 * (h * h + h * vocab) if head != "dense" else 0
    return float(c.num_hidden_layers * (tokens * per_token_layer + attention) + head)


def as_array(x) -> np.ndarray:
    """A dense numpy array of a scipy, torch (sparse or not) or numpy matrix."""
    if sp.issparse(x):
        return x.toarray()
    if isinstance(x, torch.Tensor):
        return (x.to_dense() if x.is_sparse else x).float().numpy()
    return np.asarray(x)


def time_shares(ours, tokenizer, texts, length, dtype, head: str, repeats: int) -> dict:
    """Seconds of the tokenizer, the backbone + pooling and the vocabulary projection (+ max pooling)."""
    shares = {"tokenizer": median_time(lambda: tokenizer(texts, truncation=True, max_length=length), repeats)}
    if head in ("dense", "hybrid"):
        shares["backbone + pooling"] = median_time(lambda: ours(dtype, ("dense",)), repeats)
    if head in ("sparse", "hybrid"):
        sparse = median_time(lambda: ours(dtype, ("sparse",)), repeats)
        if "backbone + pooling" in shares:
            shares["vocabulary projection"] = sparse - shares["backbone + pooling"]
        else:
            shares["backbone + projection"] = sparse
    return shares


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
    length, batch, repeats, head = int(args["--length"]), int(args["--batch"]), int(args["--repeats"]), args["--head"]
    if head not in ("sparse", "dense", "hybrid"):
        raise SystemExit(f"--head: {head!r} is not sparse, dense or hybrid")
    skip = set(filter(None, args["--skip"].split(",")))
    data = read_beir(Path(args["--data"]) / "qrels" / "test.tsv")
    texts = list(data.docs.values())[:int(args["--docs"]) or None]
    cfg = load_config(None, ["PRETRAINED_MODEL_TYPE", args["--model"], "MODEL.TOP_K", "None",
                             "MODEL.VOCAB_MASK", "['special']", "SHARED_ENCODER", "True", "BIENCODER_TYPE", head],
                      dotenv_path=None, base=model_kind(args["--model"]).settings)
    model, tokenizer = build_model(cfg)
    mlm, pooling = model.query_encoder.mlm.eval(), cfg.RETRIEVER.MODEL.POOLING
    flops = encoder_flops(mlm, tokenizer, texts, length, head)
    peaks = matmul_peaks(("fp32", "bf16"), model=model)
    skip |= {f"ours-{p}" for p in ("fp32", "bf16") if p not in peaks}
    report = {"machine": machine(), "versions": versions(), "model": args["--model"], "head": head,
              "parameters": sum(p.numel() for p in mlm.parameters()), "pooling": pooling,
              "documents": len(texts), "length": length, "batch": batch, "repeats": repeats,
              "encoder_tflop": flops / 1e12, "peak_tflops": {k: v / 1e12 for k, v in peaks.items()}, "encode": {}}
    cpu = torch.device("cpu")
    report["precision"] = auto_precision(model, cpu)
    auto = torch.bfloat16 if report["precision"]["auto"] == "bf16" else None
    ours = lambda dtype, heads=None: encode(model, tokenizer, "context", texts, length, batch, cpu, dtype, heads=heads)
    encoders = {
        "plain": (lambda: plain_encode(mlm, tokenizer, texts, length, batch, head, pooling), "fp32"),
        "ours-fp32": (lambda: ours(None), "fp32"),
        "ours-bf16": (lambda: ours(torch.bfloat16), "bf16"),
    }
    if "st" not in skip and not _installed("sentence-transformers"):
        print("sentence-transformers is not installed (pip install -r requirements/bench.txt): skipping st")
        skip.add("st")
    if "st" not in skip:
        st = st_encoders(args["--model"], length, head)
        encoders["st"] = (lambda: {name: fn(texts, batch) for name, fn in st.items()}, "fp32")
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
        for mine in ("ours-fp32", "ours-bf16"):
            if base in report["encode"] and mine in report["encode"]:
                ratio = report["encode"][base]["seconds"] / report["encode"][mine]["seconds"]
                report["encode"][f"{mine} / {base} speed-up"] = ratio
                print(f"{mine} vs {base}: {ratio:.2f}x faster")
    if "ours-fp32" in report["encode"] and "ours-bf16" in report["encode"]:
        ratio = report["encode"]["ours-fp32"]["seconds"] / report["encode"]["ours-bf16"]["seconds"]
        report["encode"]["bf16 / fp32 speed"] = ratio
        print(f"ours bf16 / fp32 speed: {ratio:.2f}x (PRECISION auto picked {report['precision']['auto']})")
    masks = [b for n, b in model.named_buffers() if n.endswith("vocab_mask")]
    allowed = np.flatnonzero(masks[0].numpy()) if masks else None
    new_head = model_kind(args["--model"]).kind == "sentence-encoder"  # sentence-transformers' is random, ours not
    for base in ("plain", "st"):
        for name in ("sparse", "dense"):
            if base in outputs and "ours-fp32" in outputs and name in outputs[base] and not (
                    new_head and base == "st" and name == "sparse"):
                theirs, mine = (as_array(x) for x in (outputs[base][name], outputs["ours-fp32"][name]))
                if name == "sparse":  # on the terms the model allows (RETRIEVER.MODEL.VOCAB_MASK)
                    theirs, mine = theirs[:, allowed], mine[:, allowed]
                else:  # sentence-transformers may normalise; compare directions
                    theirs, mine = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (theirs, mine))
                diff = float(abs(theirs - mine).max())
                report[f"max_abs_diff_{name}_ours_fp32_vs_{base}"] = diff
                print(f"{name}: max |ours fp32 - {base}| = {diff:.2e}")
    report["time_shares"] = time_shares(ours, tokenizer, texts, length, auto, head, repeats)
    print("where the time goes (" + report["precision"]["auto"] + "): " + ", ".join(
        f"{k} {v:.2f} s" for k, v in report["time_shares"].items()))
    if head == "dense":  # the search timings are the sparse index's
        print(json.dumps(report))
        return report
    if args["--index"]:
        index = SparseIndex.load(Path(args["--index"]))
        saved = load_queries(Path(args["--index"]))
        if saved is None:
            raise SystemExit(f"error: {args['--index']} has no queries.npz; evaluate a split to save them")
        queries = saved[1]
    else:
        name = "ours-bf16" if auto is not None else "ours-fp32"
        vectors = outputs[name]["sparse"] if name in outputs else ours(auto)["sparse"]
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
