"""Encoding backends, one process, the same texts: PyTorch against ONNX Runtime (fp32 and int8).

Usage:
  bench_encode_backends.py [--model=SRC] [--data=DIR] [--docs=N] [--queries=N] [--repeats=N] [--eval] [--rerank=FILE] [--output=FILE] [<override>...]

Options:
  --model=SRC     a checkpoint or a model folder, as HybridRetriever.from_pretrained takes it
                  [default: models/splade-tiny]
  --data=DIR      a BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv [default: data/raw/scifact]
  --docs=N        documents timed for corpus encoding [default: 500]
  --queries=N     queries timed one at a time for the latency [default: 200]
  --repeats=N     timed corpus encodings per backend; the median is reported [default: 3]
  --eval          also index the whole corpus with each backend and score the test queries (nDCG@10)
  --rerank=FILE   also rerank the candidates of this split (e.g. data/product-qa/test.json) with each
                  backend, through HybridRetriever.score (the model's text options) -> MRR@5
  --output=FILE   also write the report as JSON
  <override>      KEY VALUE pairs for the model (e.g. RETRIEVER.MODEL.BIENCODER_TYPE hybrid)

Backends, each giving the model's dense and sparse vectors of every text:
- pytorch fp32 / bf16: HybridPQA's encoder (bf16 only where PRECISION auto picks it here);
- onnx fp32 / int8: `HybridRetriever.export_onnx` graphs in ONNX Runtime, one call per batch giving
  both vectors (int8: dynamic quantisation, onnxruntime.quantization);
- openvino fp32: the same fp32 graphs compiled by OpenVINO for the CPU, where openvino is installed
  (pip install openvino);
- two graphs fp32 / int8: one graph per head, each a full pass over the text: the two-model way a
  hybrid is served where a runtime gives one vector per model (sentence-transformers'
  backend="onnx" runs its SparseEncoder and SentenceTransformer so).
Corpus encoding is docs/s over the first --docs documents (batches as the model's config says);
latency is one query per call, p50 / p95 over --queries queries.
"""
from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from docopt import docopt

from HybridPQA.api import SearchIndex
from HybridPQA import HybridRetriever
from HybridPQA.bench import finish, machine, median_time
from HybridPQA.config import load_config
from HybridPQA.data import build_split
from HybridPQA.data.readers import read_beir
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.modeling.onnx_runtime import OnnxEncoder


class OpenVinoEncoder(OnnxEncoder):
    """The export's graphs compiled by OpenVINO instead of run by ONNX Runtime."""

    def __init__(self, folder: Path, **kwargs):
        import openvino as ov

        super().__init__(folder, **kwargs)
        core, compiled = ov.Core(), {}
        for side, graph in self.manifest["graphs"].items():
            if graph["file"] not in compiled:
                compiled[graph["file"]] = core.compile_model(str(folder / graph["file"]), "CPU")
        self.compiled = {side: compiled[g["file"]] for side, g in self.manifest["graphs"].items()}

    def run(self, side, input_ids, attention_mask):
        out = self.compiled[side]({"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)})
        return {name: out[self.compiled[side].output(name)] for name in self.outputs[side]}


def latency(encoder, queries: list[str]) -> dict:
    encoder.encode("query", queries[:5], 1)  # warm-up
    times = []
    for text in queries:
        start = time.perf_counter()
        encoder.encode("query", [text], 1)
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}


def scored(retriever: HybridRetriever, data, scorers: list[str]) -> dict:
    """{scorer: metric}: nDCG@10 of a corpus split (indexed whole, searched), MRR@5 of a reranking one."""
    from ranx import Qrels, Run, evaluate

    qids = data.judged_qids()
    qrels = Qrels({q: {d: int(r) for d, r in data.qrels[q].items() if r > 0} for q in qids})
    if data.candidates is None:
        index = SearchIndex.build(retriever, dict(data.docs))
        return {s: float(evaluate(qrels, Run(index.search({q: data.queries[q] for q in qids}, k=100, scorer=s)),
                                  "ndcg@10")) for s in scorers}
    runs = {s: {} for s in scorers}
    for q in qids:
        docs = data.candidates[q]
        for s in scorers:
            scores = retriever.score(data.queries[q], [data.docs[d] for d in docs], s,
                                     [data.doc_source.get(d) for d in docs])
            runs[s][q] = {d: float(v) for d, v in zip(docs, scores)}
    return {s: float(evaluate(qrels, Run(runs[s]), "mrr@5")) for s in scorers}


def main(argv=None) -> dict:
    args = docopt(__doc__, argv=argv)
    overrides, repeats = args["<override>"], int(args["--repeats"])
    data = read_beir(Path(args["--data"]) / "qrels" / "test.tsv")
    docs = list(data.docs.values())[:int(args["--docs"])]
    queries = [data.queries[q] for q in data.qrels][:int(args["--queries"])]
    torch32 = HybridRetriever.from_pretrained(args["--model"], [*overrides, "PRECISION", "fp32"])
    auto = HybridRetriever.from_pretrained(args["--model"], [*overrides, "PRECISION", "auto"])
    heads = [h for h in (DENSE, SPARSE) if h in torch32.encoder.heads]
    report = {"machine": machine(), "model": args["--model"], "overrides": overrides, "heads": heads,
              "documents": len(docs), "queries": len(queries), "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        retrievers = {"pytorch fp32": torch32}
        if auto.encoder.dtype is not None:
            retrievers["pytorch bf16"] = auto
        for int8 in (False, True):
            name = "int8" if int8 else "fp32"
            torch32.export_onnx(Path(tmp) / name, int8=int8)
            retrievers[f"onnx {name}"] = HybridRetriever.from_pretrained(Path(tmp) / name)
            if not int8 and importlib.util.find_spec("openvino") is not None:
                vino = HybridRetriever.from_pretrained(Path(tmp) / name)
                vino.encoder = OpenVinoEncoder(Path(tmp) / name, batch_sizes=vino.encoder.batch_sizes)
                retrievers["openvino fp32"] = vino
            if len(heads) == 2:
                for head in heads:
                    torch32.export_onnx(Path(tmp) / f"{name}-{head}", int8=int8, heads=(head,))
                retrievers[f"two graphs {name}"] = [HybridRetriever.from_pretrained(Path(tmp) / f"{name}-{h}")
                                                    for h in heads]
        for name, r in retrievers.items():
            parts = r if isinstance(r, list) else [r]
            for p in parts:
                p.encoder.encode("context", docs[:8])  # warm-up
            seconds = median_time(lambda: [p.encoder.encode("context", docs) for p in parts], repeats, warmup=0)
            lat = [latency(p.encoder, queries) for p in parts]
            row = {"seconds": seconds, "docs_per_s": len(docs) / seconds,
                   "query_p50_ms": sum(x["p50_ms"] for x in lat), "query_p95_ms": sum(x["p95_ms"] for x in lat)}
            report["backends"][name] = row
            print(f"{name:18s} {row['docs_per_s']:8.1f} docs/s   query p50 {row['query_p50_ms']:7.2f} ms  "
                  f"p95 {row['query_p95_ms']:7.2f} ms", flush=True)
        base = report["backends"]
        for mine in ("onnx fp32", "onnx int8", "openvino fp32"):
            for other in ("pytorch fp32", "pytorch bf16", "two graphs fp32", "two graphs int8"):
                if mine in base and other in base and other != mine:
                    ratio = base[other]["seconds"] / base[mine]["seconds"]
                    base[f"{mine} / {other} docs/s"] = ratio
                    print(f"{mine} vs {other}: {ratio:.2f}x the docs/s")
        scorers = [*heads, *(["hybrid"] if len(heads) == 2 else [])]
        splits = {"ndcg@10": data if args["--eval"] else None,
                  "mrr@5": build_split(args["--rerank"], load_config(None, dotenv_path=None).RETRIEVER.DATA)
                  if args["--rerank"] else None}  # raw texts: score() applies the model's text options
        for metric, split in splits.items():
            if split is None:
                continue
            report[metric] = {}
            for name in ("pytorch fp32", "pytorch bf16", "onnx fp32", "onnx int8", "openvino fp32"):
                if name in retrievers:
                    report[metric][name] = scored(retrievers[name], split, scorers)
                    print(f"{name:18s} {metric} " + "  ".join(f"{s} {v:.4f}" for s, v in report[metric][name].items()),
                          flush=True)
    return finish(report, args["--output"])


if __name__ == "__main__":
    main()
