"""Device, precision and seeding, decided once from the config."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from yacs.config import CfgNode

from HybridPQA.errors import InputError


def build_device(cfg: CfgNode, ranks=None) -> torch.device:
    """DEVICE; under torchrun "auto" and "cuda" mean this rank's own GPU (LOCAL_RANK)."""
    if cfg.NUM_THREADS:
        torch.set_num_threads(cfg.NUM_THREADS)
    if cfg.DEVICE in ("auto", None, "cuda") and torch.cuda.is_available() and ranks is not None:
        return torch.device("cuda", ranks.local_rank)
    if cfg.DEVICE in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"config: DEVICE = {cfg.DEVICE!r} but no CUDA device is visible; use 'cpu' or 'auto'")
    return torch.device(cfg.DEVICE)


def amp_dtype(cfg: CfgNode, device: torch.device) -> torch.dtype | None:
    """bf16 (CPU or GPU), fp16 (GPU, with a GradScaler in training), or None for fp32."""
    if cfg.FP16:
        if device.type != "cuda":
            raise InputError("config: FP16 needs a CUDA device; on CPU use BF16: True")
        return torch.float16
    return torch.bfloat16 if cfg.BF16 else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
