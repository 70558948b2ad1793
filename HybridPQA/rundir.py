"""A run directory that describes itself, and owns every path in it.

<path_output>/<EXP>/
    config.yaml          the merged config it ran with (config.eval.<split>.yaml for later evaluations)
    log.txt              the console log, with argv and the environment
    metrics.jsonl        one JSON object per logged training step and per val evaluation
    fusion.json          the fusion tuned on the val split (FUSION.TUNE)
    run.lock             held by the process working in it
    checkpoints/         last/ (to resume), step_N/ (the best), best.json
    runs/<split>.<scorer>.trec    index/<split>/{sparse,dense}/    results/<split>.json, <split>.explain/
"""
from __future__ import annotations

import fcntl
import logging
import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from yacs.config import CfgNode

from HybridPQA.errors import InputError
from HybridPQA.files import hold_lock, check_writable, publish_dir

LOCK_NAME = "run.lock"
log = logging.getLogger(__name__)
BEFORE_CONFIG = {LOCK_NAME, "log.txt"}  # what a run directory holds before its config.yaml (and write probes)


def _names(contents: list[Path]) -> set[str]:
    """The names of a directory's entries, left-over write probes (`.write-test.<pid>`) aside."""
    return {p.name for p in contents if not p.name.startswith(".write-test")}


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def at(cls, path_output: str | Path, exp: str) -> RunDir:
        """<path_output>/<EXP>: EXP is one validated folder name (config.validate), so this is always
        inside path_output; a file or link there is refused."""
        path = Path(path_output) / exp
        if path.is_symlink() or path.exists() and not path.is_dir():
            raise InputError(f"{path}: exists and is not a run directory (a file or a link); choose another EXP")
        return cls(path)

    @classmethod
    def of(cls, path: str | Path | RunDir) -> RunDir:
        return path if isinstance(path, RunDir) else cls(path)

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir | None:
        """The run a checkpoint directory (<run>/checkpoints/<name>) belongs to; None for one elsewhere."""
        checkpoint = Path(checkpoint)
        return cls(checkpoint.parent.parent) if checkpoint.parent.name == "checkpoints" else None

    @classmethod
    def of_results(cls, results_file: str | Path) -> RunDir:
        return cls(Path(results_file).parent.parent)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- the files ---------------------------------------------------------------------------
    config = property(lambda self: self.path / "config.yaml")
    log = property(lambda self: self.path / "log.txt")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    fusion = property(lambda self: self.path / "fusion.json")
    lock_file = property(lambda self: self.path / LOCK_NAME)
    checkpoints = property(lambda self: self.path / "checkpoints")
    best_list = property(lambda self: self.checkpoints / "best.json")

    def eval_config(self, split: str) -> Path:
        return self.path / f"config.eval.{split}.yaml"

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / name

    def run_file(self, split: str, scorer: str) -> Path:
        return self.path / "runs" / f"{split}.{scorer}.trec"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    def results_file(self, split: str) -> Path:
        return self.path / "results" / f"{split}.json"

    def explain_dir(self, split: str) -> Path:
        return self.path / "results" / f"{split}.explain"

    def index_dir(self, split: str) -> Path:
        return self.path / "index" / split

    def best_checkpoint(self) -> Path:
        """The best kept checkpoint (best.json), else `last`."""
        kept = json.loads(self.best_list.read_text()) if self.best_list.is_file() else []
        return self.checkpoint(kept[0]["path"] if kept else "last")

    def finished(self, split: str = "test") -> bool:
        return self.results_file(split).is_file()

    # -- using it ----------------------------------------------------------------------------
    def _started_only(self, contents: list[Path]) -> bool:
        """Whether the directory holds only what a start writes before its first step (the config, the
        log, an empty checkpoints/): nothing a retry would lose."""
        names = _names(contents)
        empty_checkpoints = not self.checkpoints.is_dir() or not any(self.checkpoints.iterdir())
        return self.config.is_file() and names <= BEFORE_CONFIG | {"config.yaml", "checkpoints"} and empty_checkpoints

    def prepare(self, cfg: CfgNode, overwrite: bool = False, resume: bool = False) -> RunDir:
        """Refuse a non-empty run directory unless `overwrite` or `resume`. Overwriting empties only a
        HybridPQA run directory (one with a config.yaml), keeping its lock file; resuming needs the
        same config."""
        contents = [p for p in self.path.iterdir() if p.name != LOCK_NAME] if self.path.is_dir() else []
        if contents and not resume and self._started_only(contents):  # a failed start blocks no retry
            log.info("%s: an earlier start stopped before any checkpoint or result; starting afresh", self.path)
            overwrite = True
        if contents:
            if overwrite:
                if not self.config.is_file() and not _names(contents) <= BEFORE_CONFIG:
                    raise InputError(f"{self.path}: --overwrite replaces HybridPQA runs only, and this directory has "
                                     "no config.yaml; move it away yourself or choose another EXP")
                for path in contents:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            elif resume:
                diff = config_diff(CfgNode.load_cfg(self.config.read_text()), cfg) if self.config.is_file() else []
                if diff:
                    raise InputError(f"{self.config}: --resume needs the same config; these keys differ: "
                                     f"{', '.join(diff)}")
            else:
                raise InputError(f"{self.path} is not empty; pass --overwrite to replace it or --resume to continue it")
        elif resume:
            raise InputError(f"{self.path}: nothing to resume; run without --resume")
        check_writable(self.path)
        return self

    @contextmanager
    def lock(self):
        """Hold an exclusive lock on run.lock while the block runs (the OS drops it if the process
        dies): a second process on the same run directory gets a one-line error with our pid."""
        check_writable(self.path)
        with hold_lock(self.lock_file, f"{self.path} is in use", "or choose another EXP"):
            yield self

    def holder(self) -> str | None:
        """The pid holding run.lock, or None when no process does."""
        if not self.lock_file.is_file():
            return None
        with self.lock_file.open("r") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read().strip() or "unknown"
        return None

    def publish(self, tmp: Path, final: Path) -> None:
        """Replace `final` (a folder of this run) by the complete `tmp` one in one rename."""
        publish_dir(tmp, final)


def config_diff(a: CfgNode, b: CfgNode, prefix: str = "") -> list[str]:
    """'KEY (old -> new)' for every key whose value differs between two configs."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb and not (isinstance(va, (list, tuple)) and list(va) == list(vb or [])):
            out.append(f"{prefix}{key} ({va!r} -> {vb!r})")
    return out

