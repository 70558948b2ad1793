"""Precision, measured, not assumed: bf16 autocast is 1.4-3x faster than fp32 on CPUs with
AVX512-BF16 or AMX, and ~100x slower on AVX2-only CPUs, where oneDNN has no bf16 kernels.
PRECISION "auto" therefore times the model's own vocabulary projection in both precisions
(`probe_bf16`, once per process) and picks bf16 only where it is faster.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

import torch
from yacs.config import CfgNode

from HybridPQA.errors import InputError

log = logging.getLogger(__name__)
PROBE_TOKENS = 32  # rows of the probe matmul: a short batch of tokens
PROBE_FLOP = 16e6  # the probe multiplies by as many vocabulary columns as fit this many FLOP
PROBE_BUDGET_S = 0.05  # timed repeats of one precision stop once they have taken this long
# auto takes bf16 when the probe measures it faster than this. The probe itself varies by ~30 %
# (1.3-2.0x on an AVX512-BF16 EPYC) while AVX2-only CPUs measure ~0.03x, so no margin is needed
AUTO_BF16_MIN_RATIO = 1.0


@dataclass(frozen=True)
class Probe:
    """GFLOP/s of a (tokens, hidden) @ (hidden, columns) slice of the (hidden, vocab) projection,
    in fp32 and in bf16."""
    hidden: int
    vocab: int
    columns: int
    fp32_gflops: float
    bf16_gflops: float

    @property
    def ratio(self) -> float:
        """bf16 speed over fp32 speed: > 1 means bf16 is faster."""
        return self.bf16_gflops / self.fp32_gflops

    def describe(self) -> str:
        return (f"probe ({PROBE_TOKENS}x{self.hidden})@({self.hidden}x{self.columns}) of the {self.hidden}x{self.vocab} "
                f"projection, 1 thread: "
                f"fp32 {self.fp32_gflops:.1f} GFLOP/s, bf16 {self.bf16_gflops:.1f} GFLOP/s, bf16/fp32 {self.ratio:.2f}x")


_PROBES: dict[tuple[int, int], Probe] = {}


def _gflops(a: torch.Tensor, b: torch.Tensor, repeats: int, budget_s: float) -> float:
    """Best GFLOP/s of a @ b over 3 to `repeats` timed runs (after an untimed warm-up, which
    builds the kernel), stopping once the timed runs have taken `budget_s`; the best run is the
    one least disturbed by other processes."""
    a @ b
    best, spent = float("inf"), 0.0
    for count in range(1, repeats + 1):
        start = time.perf_counter()
        a @ b
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if count >= 3 and spent > budget_s:
            break
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9


def probe_bf16(hidden: int, vocab: int, fake_ratio: float | None = None) -> Probe:
    """Time a slice of the vocabulary projection's matmul in fp32 and bf16 on one CPU thread;
    cached per process. `fake_ratio` (or the environment variable HPQA_PROBE_BF16_RATIO)
    replaces the bf16 measurement by fp32 * ratio, to test the choice on any machine."""
    fake = fake_ratio if fake_ratio is not None else os.environ.get("HPQA_PROBE_BF16_RATIO")
    key = (hidden, vocab)
    if key not in _PROBES or fake is not None:
        columns = int(min(vocab, max(256, PROBE_FLOP / (2 * PROBE_TOKENS * hidden))))
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(PROBE_TOKENS, hidden, generator=generator)
        b = torch.randn(hidden, columns, generator=generator)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one core's kernels: no thread barriers for a busy machine to stall
        try:
            fp32 = _gflops(a, b, 20, PROBE_BUDGET_S)
            bf16 = fp32 * float(fake) if fake is not None else _gflops(a.bfloat16(), b.bfloat16(), 20, PROBE_BUDGET_S)
        finally:
            torch.set_num_threads(threads)
        probe = Probe(hidden, vocab, columns, fp32, bf16)
        if fake is not None:
            return probe
        _PROBES[key] = probe
    return _PROBES[key]


def projection_shape(model) -> tuple[int, int]:
    """(hidden, vocab) of a model's largest weight matrix: its word embeddings, which the MLM decoder
    (the sparse head's projection) shares. Models without weights probe BERT's (768, 30522)."""
    matrices = [p for p in model.parameters() if p.dim() == 2] if isinstance(model, torch.nn.Module) else []
    if not matrices:
        return 768, 30522
    largest = max(matrices, key=lambda p: p.numel())
    return min(largest.shape), max(largest.shape)


def _requested(cfg: CfgNode) -> tuple[str, str]:
    """(precision, which key asked for it): FP16 True, BF16 True or False are explicit; else PRECISION."""
    if cfg.FP16:
        return "fp16", "FP16: True"
    if cfg.BF16:
        return "bf16", "BF16: True"
    if cfg.BF16 is False:
        return "fp32", "BF16: False"
    return cfg.PRECISION, f"PRECISION: {cfg.PRECISION}"


def build_precision(cfg: CfgNode, device: torch.device, model=None) -> torch.dtype | None:
    """The autocast dtype (None = fp32) for this config, model and device; logs what and why.

    auto: on CUDA, bf16 where `torch.cuda.is_bf16_supported()`; on CPU, bf16 only where the probe
    measures it faster than fp32 (AUTO_BF16_MIN_RATIO); else fp32. An explicit bf16 that the probe finds slower warns
    with the measured ratio, then runs as told."""
    return resolve_precision(*_requested(cfg), device, model)


def resolve_precision(precision: str, source: str, device: torch.device, model=None) -> torch.dtype | None:
    """`precision` ("auto", "fp32", "bf16", "fp16", asked for by `source`) as an autocast dtype."""
    if precision == "fp16" and device.type != "cuda":
        raise InputError(f"config: {source} needs a CUDA device; on CPU use PRECISION: auto or bf16")
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision == "auto":
            precision = "bf16" if bf16_ok else "fp32"
            why = f"auto: {torch.cuda.get_device_name(device)} {'supports' if bf16_ok else 'lacks'} bf16"
        else:
            why = source
        log.info("precision: %s (%s)", precision, why)
    elif precision in ("auto", "bf16"):
        probe = probe_bf16(*projection_shape(model))
        if precision == "auto":
            precision = "bf16" if probe.ratio > AUTO_BF16_MIN_RATIO else "fp32"
            verdict = "faster" if precision == "bf16" else "not faster"
            log.info("precision: %s (auto: bf16 is %s here; %s)", precision, verdict, probe.describe())
        elif probe.ratio < 1.0:
            log.warning("precision: bf16 as %s asks, but bf16 runs at %.2fx fp32's speed on this CPU (%s); "
                        "PRECISION: auto would pick fp32", source, probe.ratio, probe.describe())
        else:
            log.info("precision: bf16 (%s; %s)", source, probe.describe())
    else:
        log.info("precision: %s (%s)", precision, source)
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
