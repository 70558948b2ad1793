"""Where training's numbers go: `metrics.jsonl` always, and the LOG.BACKENDS experiment trackers.

Every record written to metrics.jsonl (training steps: losses, active dims, lr, lambdas; val
evaluations: every scorer's metrics) goes to each backend as scalars at its step, val ones under
"val/"; the merged config goes along once. The tracker takes plain values (the backends' names,
the experiment's name and project, the config as text and as a dict), never the config node:
`build_tracker` reads them from the config.
- tensorboard: torch's SummaryWriter, event files in <run>/tensorboard/ (`tensorboard --logdir output`)
- wandb: Weights & Biases, run files in <run>/wandb/; WANDB_MODE=offline (or disabled) is honoured
"""
from __future__ import annotations

import json
import logging
import os

from dataclasses import dataclass, field

from HybridPQA.config import LOG_BACKENDS
from HybridPQA.errors import InputError
from HybridPQA.rundir import RunDir

log = logging.getLogger(__name__)


def _scalars(record: dict) -> dict[str, float]:
    prefix = "val/" if record.get("split") == "val" else "train/"
    return {prefix + k: float(v) for k, v in record.items()
            if k not in ("step", "split") and isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass(frozen=True)
class Experiment:
    """What the trackers are told of a run: its name, the W&B project, the merged config (YAML text
    and a plain dict)."""

    name: str
    project: str
    config_text: str
    config: dict = field(default_factory=dict)


class TensorBoard:
    def __init__(self, run_dir: RunDir, experiment: Experiment):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError("config: LOG.BACKENDS tensorboard needs `pip install tensorboard`") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", "```yaml\n" + experiment.config_text + "\n```", 0)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB:
    def __init__(self, run_dir: RunDir, experiment: Experiment):
        try:
            import wandb
        except ImportError:
            raise InputError("config: LOG.BACKENDS wandb needs `pip install wandb`") from None
        mode = os.environ.get("WANDB_MODE") or None
        if mode in (None, "online", "run") and not os.environ.get("WANDB_API_KEY") and not _logged_in(wandb):
            raise InputError("config: LOG.BACKENDS wandb: no W&B API key here (WANDB_API_KEY, or `wandb login`); "
                             "set WANDB_MODE=offline to keep the run on disk (sync it later with `wandb sync`)")
        self.run = wandb.init(project=experiment.project, name=experiment.name, dir=str(run_dir),
                              config=experiment.config, mode=mode, reinit="finish_previous")

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


class Tracker:
    """metrics.jsonl (appended, so a resumed run continues it) plus the configured backends."""

    def __init__(self, run_dir: RunDir, backends: tuple[str, ...], experiment: Experiment, enabled: bool = True):
        self.file = run_dir.metrics.open("a") if enabled else None
        self.backends = []
        if enabled:
            kinds = dict(zip(LOG_BACKENDS, (TensorBoard, WandB)))
            self.backends = [kinds[name](run_dir, experiment) for name in backends]
            if self.backends:
                log.info("tracking to metrics.jsonl and %s", ", ".join(backends))

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


def build_tracker(run_dir: RunDir, cfg, enabled: bool = True) -> Tracker:
    """LOG.BACKENDS, with the experiment's name, project and merged config."""
    experiment = Experiment(cfg.EXP, cfg.LOG.WANDB_PROJECT, cfg.dump(), json.loads(json.dumps(cfg, default=list)))
    return Tracker(run_dir, tuple(cfg.LOG.BACKENDS), experiment, enabled)
