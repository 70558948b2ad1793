"""Training throughput of the hybrid step against a plain step written the obvious way.

Usage:
  bench_train.py [--setups=LIST] [--steps=N] [--repeats=N] [--length=N] [--precisions=LIST] [--device=D] [--st] [--output=FILE]

Options:
  --setups=LIST       splade-tiny (models/splade-tiny), minilm (models/all-MiniLM-L6-v2, 22.7 M, with a
                      new MLM head) and/or bert-base (a randomly initialised bert-base-size
                      BertForMaskedLM with splade-tiny's vocabulary) [default: splade-tiny,bert-base]
  --steps=N           timed optimizer steps per measurement, after one untimed [default: 5]
  --repeats=N         measurements per setting; the median is reported [default: 3]
  --length=N          tokens per text (padded to it, as in the paper) [default: 128]
  --precisions=LIST   fp32, bf16 [default: fp32,bf16]
  --st                also time sentence-transformers' training step for the same hybrid
  --device=D          cpu, cuda or auto [default: auto]
  --output=FILE       also write the report as JSON

Every step is the training loop's: 8 real product-QA questions x 5 contexts through the hybrid
BiEncoder (two backbones), `HybridLoss` (contrastive dense + sparse, FLOPS), backward, gradient
clipping and the configured AdamW. The plain step differs only in its sparse head: the full
(B, L, V) MLM logits, log1p(relu(.)) on all of them, masked max. Ours (MaxPooledProjection)
projects the vocabulary in tiles, keeps only the argmax and back-propagates sparsely.
With --st: sentence-transformers' step, as its trainers run it (one model per head, since none of its
models gives both): a SparseEncoder (fill-mask Transformer + SpladePooling max) with SpladeLoss(
SparseMultipleNegativesRankingLoss, FLOPS on both sides) and a SentenceTransformer (Transformer +
the backbone's pooling) with MultipleNegativesRankingLoss, each a forward + backward of the same
texts (padded alike), clipping and AdamW; "st hybrid" is both steps, "st sparse" and "st dense" each.
"MFU" = 3 x forward FLOPs (calflops, dense-equivalent: the whole vocabulary projection counted)
per second over the measured peak of a large matmul at the same precision on the same device;
our backward skips most of the projection's dense-equivalent work, so it can exceed 100 %.
"""
import statistics
import tempfile
import time
from pathlib import Path

import torch
from calflops import calculate_flops
from docopt import docopt
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from HybridPQA.bench import auto_precision, finish, machine, matmul_peaks
from HybridPQA.config import load_config
from HybridPQA.data import build_split
from HybridPQA.data.training import TrainingSet
from HybridPQA.precision import autocast
from HybridPQA.engine.schedule import build_optimizer
from HybridPQA.losses import build_loss
from HybridPQA.modeling import build_model

REPO = Path(__file__).resolve().parents[1]
QUESTIONS, CONTEXTS = 8, 5


def plain_sparse(encoder, input_ids, attention_mask):
    """The obvious SPLADE: full logits, activation on all of them, then the masked max."""
    hidden = encoder.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    weights = torch.log1p(torch.relu(encoder.mlm.cls(hidden))) * attention_mask.unsqueeze(-1)
    weights = weights.max(dim=1).values * encoder.sparse_head.vocab_mask
    values, index = weights.topk(encoder.sparse_head.top_k, dim=-1)
    return {"dense": encoder.dense_head(hidden, attention_mask),
            "sparse": torch.zeros_like(weights).scatter(-1, index, values)}


def bert_base(folder: Path) -> Path:
    """A randomly initialised bert-base-size masked LM (12 x 768, 110 M parameters), saved with
    splade-tiny's tokenizer (the same 30,522-term BERT vocabulary)."""
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig()).save_pretrained(folder)
    AutoTokenizer.from_pretrained(REPO / "models" / "splade-tiny").save_pretrained(folder)
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def steps_per_second(step, batches, device: torch.device, steps: int) -> float:
    """`step(batch)` per second over `steps` timed calls, after one untimed warm-up call."""
    step(batches[-1])
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    sync(device)
    return steps / (time.perf_counter() - start)


def measure(model, cfg, batches, tokenizer, length, device, dtype, plain: bool, steps: int) -> float:
    """Optimizer steps per second over `steps` timed steps, after one untimed warm-up step."""
    s, loss = cfg.RETRIEVER.SOLVER, build_loss(cfg)
    optimizer = build_optimizer(model, s.OPTIMIZER)
    model.train()

    def encode(encoder, texts):
        batch = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt",
                          return_token_type_ids=False)
        batch = {k: v.to(device) for k, v in batch.items()}
        return plain_sparse(encoder, **batch) if plain else encoder(**batch)

    def step(batch) -> None:
        with autocast(device, dtype):
            parts = loss(encode(model.query_encoder, batch.questions), encode(model.context_encoder, batch.contexts),
                         batch.positive.to(device), step=s.TOTAL_TRAIN_STEPS)  # the lambdas at full strength
        sum(parts.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.OPTIMIZER.MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return steps_per_second(step, batches, device, steps)


def st_steps(source: str, cfg, length: int, device: torch.device) -> dict:
    """{name: (model, loss)}: sentence-transformers' sparse and dense training setups of `source`."""
    from sentence_transformers import SentenceTransformer, SparseEncoder
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer as DenseTransformer
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    s = cfg.RETRIEVER.SOLVER
    sparse = SparseEncoder(modules=[Transformer(source, transformer_task="fill-mask", max_seq_length=length),
                                    SpladePooling("max")], device=str(device))
    backbone = DenseTransformer(source, max_seq_length=length)
    dense = SentenceTransformer(modules=[backbone, Pooling(backbone.get_embedding_dimension(),
                                                           cfg.RETRIEVER.MODEL.POOLING)], device=str(device))
    return {"sparse": (sparse, SpladeLoss(sparse, SparseMultipleNegativesRankingLoss(sparse),
                                          document_regularizer_weight=s.LAMBDA_CONTEXT,
                                          query_regularizer_weight=s.LAMBDA_QUERY)),
            "dense": (dense, MultipleNegativesRankingLoss(dense))}


def measure_st(setups: dict, names: tuple[str, ...], cfg, batches, length, device, dtype, steps: int) -> float:
    """Optimizer steps per second of sentence-transformers' step(s) `names`, as `measure`."""
    optimizers = {n: build_optimizer(setups[n][0], cfg.RETRIEVER.SOLVER.OPTIMIZER) for n in names}

    def step(batch) -> None:
        columns = [batch.questions] + [batch.contexts[j::CONTEXTS] for j in range(CONTEXTS)]  # anchor, pos, negs
        for name in names:
            model, loss = setups[name]
            model.train()
            features = [{k: v.to(device) for k, v in model.tokenizer(
                texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt").items()}
                for texts in columns]
            with autocast(device, dtype):
                value = loss(features, None)
            (sum(value.values()) if isinstance(value, dict) else value).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.RETRIEVER.SOLVER.OPTIMIZER.MAX_GRAD_NORM)
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)

    return steps_per_second(step, batches, device, steps)


def bench_setup(name: str, source: str, args: dict, device: torch.device, report: dict) -> None:
    steps, repeats, length = int(args["--steps"]), int(args["--repeats"]), int(args["--length"])
    cfg = load_config(REPO / "configs" / "quickstart.yaml", ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", source],
                      dotenv_path=None)
    model, tokenizer = build_model(cfg)
    model.to(device)
    train = build_split(REPO / "data" / "product-qa" / "train.json", cfg.RETRIEVER.DATA)
    batches = [TrainingSet(train, QUESTIONS, 1, CONTEXTS, 0).batch(0, i) for i in range(steps)]
    # FLOPs of a text whose `length` tokens are all real: the dense-equivalent count (our projection skips padding)
    sample = tokenizer(["word " * length], truncation=True, max_length=length, return_tensors="pt",
                       return_token_type_ids=False)
    sample = {k: v.to(device) for k, v in sample.items()}
    fwd = calculate_flops(model=model.query_encoder, kwargs=sample, print_results=False, output_as_string=False)[0]
    texts = QUESTIONS * (1 + CONTEXTS)
    step_flops = 3 * fwd * texts  # forward + backward (~2x forward)
    params = sum(p.numel() for p in model.parameters())
    report[name] = {"parameters": params, "gflops_per_step": step_flops / 1e9, "results": {},
                    "precision": auto_precision(model, device)}
    print(f"\n{name}: {params / 1e6:.1f} M parameters (two backbones), {step_flops / 1e12:.3f} TFLOP per step "
          f"(dense-equivalent), {texts} texts x {length} tokens")
    setups = st_steps(source, cfg, length, device) if args["--st"] else {}
    ways = {"plain": lambda dtype: measure(model, cfg, batches, tokenizer, length, device, dtype, True, steps),
            "ours": lambda dtype: measure(model, cfg, batches, tokenizer, length, device, dtype, False, steps)}
    for names in (("sparse", "dense"), ("sparse",), ("dense",)) if setups else ():
        label = "st " + ("hybrid" if len(names) == 2 else names[0])
        ways[label] = lambda dtype, names=names: measure_st(setups, names, cfg, batches, length, device, dtype, steps)
    for precision in args["--precisions"].split(","):
        if precision not in report["peak_tflops"]:
            report["peak_tflops"] |= {p: v / 1e12 for p, v in matmul_peaks((precision,), device, model).items()}
        if precision not in report["peak_tflops"]:
            continue  # no fast kernels for it here (said above)
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        peak = report["peak_tflops"][precision]
        for way, run in ways.items():
            rate = statistics.median(run(dtype) for _ in range(repeats))
            key = f"{precision} {way}"
            mfu = step_flops * rate / (peak * 1e12)
            report[name]["results"][key] = {"steps_per_s": rate, "questions_per_s": QUESTIONS * rate,
                                            "tokens_per_s": texts * length * rate, "mfu": mfu}
            print(f"  {key:15s} {QUESTIONS * rate:8.2f} questions/s {texts * length * rate:10.0f} tokens/s  "
                  f"MFU {100 * mfu:6.1f} % of {peak:.2f} TFLOP/s")
        results = report[name]["results"]
        for way in ways:
            if way != "ours":
                ratio = results[f"{precision} ours"]["steps_per_s"] / results[f"{precision} {way}"]["steps_per_s"]
                results[f"{precision} ours / {way}"] = ratio
                print(f"  {precision}: ours / {way} = {ratio:.2f}x")
    if {"fp32 ours", "bf16 ours"} <= set(report[name]["results"]):
        for kind in ("ours", "plain"):
            ratio = report[name]["results"][f"bf16 {kind}"]["steps_per_s"] / report[name]["results"][f"fp32 {kind}"]["steps_per_s"]
            report[name][f"bf16_over_fp32_{kind}"] = ratio
            print(f"  {kind}: bf16 / fp32 = {ratio:.2f}x (PRECISION auto picked {report[name]['precision']['auto']})")


def main(argv=None) -> dict:
    args = docopt(__doc__, argv=argv)
    device = torch.device("cuda" if args["--device"] == "auto" and torch.cuda.is_available()
                          else "cpu" if args["--device"] == "auto" else args["--device"])
    report = {"machine": machine(), "device": str(device), "length": int(args["--length"]), "peak_tflops": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"splade-tiny": lambda: str(REPO / "models" / "splade-tiny"),
                   "minilm": lambda: str(REPO / "models" / "all-MiniLM-L6-v2"),
                   "bert-base": lambda: str(bert_base(Path(tmp) / "bert-base"))}
        for name in args["--setups"].split(","):
            if name not in sources:
                raise SystemExit(f"--setups: {name!r} is not one of {', '.join(sources)}")
            bench_setup(name, sources[name](), args, device, report)
    return finish(report, args["--output"])


if __name__ == "__main__":
    main()
