"""Precision chosen by measurement, threads from the CPU affinity, progress bars off in CI."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from HybridPQA.config import load_config
from HybridPQA import precision, runtime
from HybridPQA.errors import InputError
from HybridPQA.sweeps.process import core_shares

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
TINY = torch.nn.Embedding(30522, 128)  # splade-tiny's vocabulary projection shape


def _precision(overrides, caplog, ratio: float | None, monkeypatch):
    if ratio is None:
        monkeypatch.delenv("HPQA_PROBE_BF16_RATIO", raising=False)
    else:
        monkeypatch.setenv("HPQA_PROBE_BF16_RATIO", str(ratio))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="HybridPQA.precision"):
        return precision.build_precision(load_config(None, overrides, dotenv_path=None), CPU, TINY)


def test_auto_picks_fp32_where_bf16_is_slower(caplog, monkeypatch):
    """The AVX2-only case (bf16 ~100x slower): auto runs fp32 and the log gives both speeds."""
    assert _precision([], caplog, 0.01, monkeypatch) is None
    line = caplog.records[-1].getMessage()
    assert line.startswith("precision: fp32 (auto: bf16 is not faster here") and "fp32" in line and "GFLOP/s" in line
    assert "(32x128)@(128x" in line and "bf16/fp32 0.01x" in line


def test_auto_picks_bf16_where_bf16_is_faster(caplog, monkeypatch):
    assert _precision([], caplog, 1.8, monkeypatch) is torch.bfloat16
    assert caplog.records[-1].getMessage().startswith("precision: bf16 (auto: bf16 is faster here")
    assert _precision([], caplog, 0.9, monkeypatch) is None
    assert "bf16 is not faster here" in caplog.records[-1].getMessage()


def test_explicit_bf16_on_a_slow_cpu_warns_then_obeys(caplog, monkeypatch):
    for overrides in (["BF16", "True"], ["PRECISION", "bf16"]):
        assert _precision(overrides, caplog, 0.02, monkeypatch) is torch.bfloat16
        warning = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warning) == 1 and "0.02x fp32's speed" in warning[0].getMessage()
        assert "\n" not in warning[0].getMessage()


def test_explicit_fp32_needs_no_probe(caplog, monkeypatch):
    for overrides in (["BF16", "False"], ["PRECISION", "fp32"]):
        assert _precision(overrides, caplog, 0.5, monkeypatch) is None
        assert "probe" not in caplog.records[-1].getMessage()


@pytest.mark.parametrize("overrides, message", [
    (["PRECISION", "fp32", "BF16", "True"], "keep PRECISION and drop BF16/FP16"),
    (["PRECISION", "half"], "PRECISION = 'half' is not one of auto, fp32, bf16, fp16"),
    (["BF16", "'yes'"], "BF16 = 'yes' must be True, False or None"),
])
def test_precision_config_errors(overrides, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides, dotenv_path=None)


def test_fp16_on_cpu_is_refused(monkeypatch, caplog):
    with pytest.raises(InputError, match="FP16: True needs a CUDA device"):
        _precision(["FP16", "True"], caplog, None, monkeypatch)


def test_probe_is_cached_and_measures_both(monkeypatch):
    monkeypatch.delenv("HPQA_PROBE_BF16_RATIO", raising=False)
    first = precision.probe_bf16(128, 30522)
    assert precision.probe_bf16(128, 30522) is first  # once per process
    assert first.fp32_gflops > 0 and first.bf16_gflops > 0 and first.columns <= 30522
    assert precision.projection_shape(TINY) == (128, 30522)


def test_simulated_avx2_cpu_picks_fp32():
    """oneDNN limited to AVX2 has no bf16 kernels: the real probe, in a fresh process, measures
    bf16 slower and auto picks fp32 (on an AVX512-BF16 / AMX machine this simulates an AVX2 one)."""
    code = ("import torch, logging; logging.basicConfig(level=logging.INFO);"
            "from HybridPQA.precision import resolve_precision;"
            "print(resolve_precision('auto', 'test', torch.device('cpu'), torch.nn.Embedding(30522, 128)))")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    env.pop("HPQA_PROBE_BF16_RATIO", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None", done.stderr
    assert "precision: fp32 (auto: bf16 is not faster here" in done.stderr


def test_threads_default_to_the_affinity():
    saved = torch.get_num_threads()
    try:
        assert runtime.configure_threads(0) == len(os.sched_getaffinity(0)) == torch.get_num_threads()
        assert runtime.configure_threads(1) == 1 == torch.get_num_threads()
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    finally:
        torch.set_num_threads(saved)


def test_sweep_jobs_split_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert core_shares(2) == [{0, 1}, {2, 3}]
    assert core_shares(3) == [{0}, {1}, {2, 3}]
    assert core_shares(6) == [{0}, {1}, {2}, {3}, {0}, {1}]


def test_progress_is_off_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert runtime.progress(range(3)).disable
    monkeypatch.delenv("CI")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert not runtime.progress(range(3)).disable
    assert runtime.progress(range(3), enabled=False).disable


def test_shipped_configs_choose_precision_automatically():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        text = path.read_text()
        assert "BF16" not in text and "FP16" not in text, path
        assert all(line.split("#")[0].split(":")[1].strip() == "auto" for line in text.splitlines()
                   if line.strip().startswith("PRECISION")), path
    for path in sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "configs" / "experiments").glob("*.yaml")):
        assert load_config(path, dotenv_path=None).PRECISION == "auto", path
