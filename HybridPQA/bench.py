"""What the benchmark scripts share: the machine's measured matmul peak and a description of it."""
from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

from HybridPQA.precision import probe_bf16, projection_shape, resolve_precision


def matmul_peak(dtype: torch.dtype, size: int = 4096, repeats: int = 5, device: torch.device | str = "cpu") -> float:
    """FLOP/s of a large square matmul at `dtype` on `device`: the peak the benchmarks compare against."""
    device = torch.device(device)
    if device.type == "cuda":
        size, repeats = 8192, 50
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


BF16_USABLE = 0.5  # bf16 at least half fp32's speed in the probe: the CPU has bf16 kernels (AVX2-only: ~0.01)


def matmul_peaks(precisions, device: torch.device | str = "cpu", model=None) -> dict[str, float]:
    """{precision: FLOP/s of a large matmul} for each of `precisions` ("fp32", "bf16") this device runs:
    bf16 is measured on a CPU only where the probe finds bf16 kernels (an AVX2-only CPU runs a 4096^3
    bf16 matmul at ~1 GFLOP/s, minutes per repeat), else left out with a line saying why."""
    device, peaks = torch.device(device), {}
    for precision in precisions:
        if precision == "bf16" and device.type == "cpu":
            probe = probe_bf16(*(projection_shape(model) if model is not None else (768, 30522)))
            if probe.ratio < BF16_USABLE:
                print(f"bf16 left out: this CPU has no fast bf16 kernels ({probe.describe()})")
                continue
        peaks[precision] = matmul_peak({"fp32": torch.float32, "bf16": torch.bfloat16}[precision], device=device)
    return peaks


def auto_precision(model, device: torch.device) -> dict:
    """What PRECISION auto picks for `model` on `device` (printed), with the CPU probe's numbers."""
    dtype = resolve_precision("auto", "PRECISION: auto", torch.device(device), model)
    out = {"auto": {None: "fp32", torch.bfloat16: "bf16"}[dtype]}
    if torch.device(device).type == "cpu":
        probe = probe_bf16(*projection_shape(model))
        out |= {"probe_fp32_gflops": probe.fp32_gflops, "probe_bf16_gflops": probe.bf16_gflops,
                "probe_bf16_over_fp32": probe.ratio}
        print(f"PRECISION auto picks {out['auto']} on this machine: {probe.describe()}")
    else:
        print(f"PRECISION auto picks {out['auto']} on {device}")
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def finish(report: dict, output: str | None) -> dict:
    """Print the report as one JSON line, and write it (indented) to `output` when given."""
    print(json.dumps(report))
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(report, indent=2))
    return report
