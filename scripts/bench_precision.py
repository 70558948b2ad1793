"""bf16 against fp32 on this machine: the matmuls a retriever runs, and what PRECISION auto picks.

Usage:
  bench_precision.py [--threads=N] [--repeats=N] [--output=FILE]

Options:
  --threads=N   torch threads; 0 = the process's cores (as the project runs) [default: 0]
  --repeats=N   timed runs per matmul; the best is reported [default: 5]
  --output=FILE also write the report as JSON

Shapes (rows x inner @ inner x columns): splade-tiny's vocabulary projection in tiles
(2048 x 128 @ 128 x 4096), its attention-sized matmul (2048 x 128 @ 128 x 128), and
bert-base's feed-forward (2048 x 768 @ 768 x 3072); plain matmuls on pre-cast tensors and
F.linear under autocast (which casts the fp32 weight each call, as training and evaluation do).
The baseline of every ratio is fp32 on the same shape in the same run. Run it again with
ONEDNN_MAX_CPU_ISA=AVX2 to see an AVX2-only CPU, where oneDNN has no bf16 kernels.
"""
from __future__ import annotations

import json
import os
import time

import torch
import torch.nn.functional as F
from docopt import docopt

from HybridPQA.bench import machine
from HybridPQA.runtime import configure_threads
from HybridPQA.precision import AUTO_BF16_MIN_RATIO, probe_bf16

SHAPES = {"splade-tiny projection tile": (2048, 128, 4096), "splade-tiny attention-sized": (2048, 128, 128),
          "bert-base feed-forward": (2048, 768, 3072)}


def best_seconds(fn, repeats: int, budget_s: float = 5.0) -> float:
    fn()
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if spent > budget_s:  # bf16 on an AVX2-only CPU: one or two runs say enough
            break
    return best


def main(argv=None) -> dict:
    args = docopt(__doc__, argv=argv)
    threads, repeats = configure_threads(int(args["--threads"])), int(args["--repeats"])
    report = {"machine": machine(), "threads": threads, "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
              "avx512_bf16": torch.cpu._is_avx512_bf16_supported(), "amx": torch.cpu._is_amx_tile_supported(),
              "matmul": {}}
    print(f"{report['machine']['cpu']}, {threads} thread(s), AVX512-BF16 {report['avx512_bf16']}, AMX {report['amx']}, "
          f"ONEDNN_MAX_CPU_ISA={report['onednn_max_cpu_isa']}")
    for name, (m, k, n) in SHAPES.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        flop = 2 * m * k * n
        row = {}
        for kind, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            x, y = a.to(dtype), b.to(dtype)
            row[f"matmul {kind}"] = flop / best_seconds(lambda: x @ y, repeats) / 1e9
            w = b.T.contiguous()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16"), torch.inference_mode():
                row[f"linear {kind}"] = flop / best_seconds(lambda: F.linear(a, w), repeats) / 1e9
        row["matmul bf16/fp32"] = row["matmul bf16"] / row["matmul fp32"]
        row["linear bf16/fp32"] = row["linear bf16"] / row["linear fp32"]
        report["matmul"][name] = row
        print(f"{name:28s} matmul fp32 {row['matmul fp32']:7.1f}  bf16 {row['matmul bf16']:7.1f} GFLOP/s "
              f"({row['matmul bf16/fp32']:.2f}x)   autocast linear fp32 {row['linear fp32']:7.1f}  "
              f"bf16 {row['linear bf16']:7.1f} ({row['linear bf16/fp32']:.2f}x)", flush=True)
    start = time.perf_counter()
    probe = probe_bf16(128, 30522)
    report["probe"] = {"seconds": time.perf_counter() - start, "fp32_gflops": probe.fp32_gflops,
                       "bf16_gflops": probe.bf16_gflops, "bf16_over_fp32": probe.ratio,
                       "auto_picks": "bf16" if probe.ratio > AUTO_BF16_MIN_RATIO else "fp32"}
    print(f"PRECISION auto picks {report['probe']['auto_picks']}: {probe.describe()} "
          f"(took {report['probe']['seconds']:.3f} s)")
    print(json.dumps(report))
    if args["--output"]:
        with open(args["--output"], "w") as handle:
            json.dump(report, handle, indent=2)
    return report


if __name__ == "__main__":
    main()
