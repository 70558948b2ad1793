"""Where training's numbers go: `metrics.jsonl` always, and the LOG.BACKENDS experiment trackers.

Every record written to metrics.jsonl (training steps: losses, active dims, lr, lambdas; val
evaluations: every scorer's metrics) goes to each backend as scalars at its step, val ones under
"val/"; the merged config goes along once.
- tensorboard: torch's SummaryWriter, event files in <run>/tensorboard/ (`tensorboard --logdir output`)
- wandb: Weights & Biases, run files in <run>/wandb/; WANDB_MODE=offline (or disabled) is honoured
"""
from __future__ import annotations

import json
import logging
import os

from yacs.config import CfgNode

from HybridPQA.config import LOG_BACKENDS
from HybridPQA.errors import InputError
from HybridPQA.rundir import RunDir

log = logging.getLogger(__name__)


def _scalars(record: dict) -> dict[str, float]:
    prefix = "val/" if record.get("split") == "val" else "train/"
    return {prefix + k: float(v) for k, v in record.items()
            if k not in ("step", "split") and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoard:
    def __init__(self, run_dir: RunDir, cfg: CfgNode):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError("config: LOG.BACKENDS tensorboard needs `pip install tensorboard`") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", "```yaml\n" + cfg.dump() + "\n```", 0)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB:
    def __init__(self, run_dir: RunDir, cfg: CfgNode):
        try:
            import wandb
        except ImportError:
            raise InputError("config: LOG.BACKENDS wandb needs `pip install wandb`") from None
        mode = os.environ.get("WANDB_MODE") or None
        if mode in (None, "online", "run") and not os.environ.get("WANDB_API_KEY") and not _logged_in(wandb):
            raise InputError("config: LOG.BACKENDS wandb: no W&B API key here (WANDB_API_KEY, or `wandb login`); "
                             "set WANDB_MODE=offline to keep the run on disk (sync it later with `wandb sync`)")
        self.run = wandb.init(project=cfg.LOG.WANDB_PROJECT, name=cfg.EXP, dir=str(run_dir), config=_plain(cfg),
                              mode=mode, reinit="finish_previous")

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


def _logged_in(wandb) -> bool:
    """Whether `wandb login` stored a key (netrc) on this machine; never asks for one."""
    try:
        return bool(wandb.login(prompt=False))
    except Exception:  # noqa: BLE001 - any failure to find a key means: not logged in
        return False


def _plain(cfg) -> dict:
    return json.loads(json.dumps(cfg, default=list))


class Tracker:
    """metrics.jsonl (appended, so a resumed run continues it) plus the configured backends."""

    def __init__(self, run_dir: RunDir, cfg: CfgNode, enabled: bool = True):
        self.file = run_dir.metrics.open("a") if enabled else None
        self.backends = []
        if enabled:
            backends = dict(zip(LOG_BACKENDS, (TensorBoard, WandB)))
            self.backends = [backends[name](run_dir, cfg) for name in cfg.LOG.BACKENDS]
            if self.backends:
                log.info("tracking to metrics.jsonl and %s", ", ".join(cfg.LOG.BACKENDS))

    def log(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for backend in self.backends:
            backend.log(_scalars(record), record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        for backend in self.backends:
            backend.close()
