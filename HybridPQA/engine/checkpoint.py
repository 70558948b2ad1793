"""Training state on disk: `checkpoints/last/` for resuming, `checkpoints/step_N/` for the best N.

Every file is written through a temporary file and a rename, so a crash never leaves a torn one.
`last/` holds the model checkpoint plus `trainer.pt`: optimizer, scheduler, GradScaler, the
RNG states, the optimizer step, the data position (epoch, batch) and the kept best list.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from HybridPQA.errors import InputError
from HybridPQA.files import load_torch, save_atomic, write_atomic
from HybridPQA.modeling.saved import Checkpointer
from HybridPQA.rundir import RunDir


def rng_state() -> dict:
    """Every generator's state as tensors and plain values, so trainer.pt loads with weights_only."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_last(run_dir: RunDir | Path, checkpointer: Checkpointer, model, trainer: dict) -> None:
    """Replace checkpoints/last so that a crash at any point leaves one complete copy: write
    last.tmp, move last to last.old, move last.tmp to last, delete last.old."""
    run_dir = RunDir.of(run_dir)
    tmp, last = run_dir.checkpoint("last.tmp"), run_dir.checkpoint("last")
    shutil.rmtree(tmp, ignore_errors=True)
    checkpointer.save(model, tmp)
    save_atomic({**trainer, "rng": rng_state()}, tmp / "trainer.pt")
    run_dir.publish(tmp, last)


def load_last(run_dir: RunDir | Path) -> tuple[Path, dict]:
    """(checkpoint directory, trainer state) to resume from; last.old if a crash came between the swaps."""
    run_dir = RunDir.of(run_dir)
    last = next((p for p in (run_dir.checkpoint("last"), run_dir.checkpoint("last.old"))
                 if (p / "trainer.pt").is_file()), None)
    if last is None:
        raise InputError(f"{run_dir}: --resume needs {run_dir.checkpoint('last')}/trainer.pt, which does not exist; "
                         "start without --resume (or with --overwrite)")
    return last, load_torch(last / "trainer.pt")


def keep_best(run_dir: RunDir, checkpointer: Checkpointer, model, kept: list[dict], step: int, value: float,
              limit: int) -> list[dict]:
    """Save step_N if it is among the `limit` best so far; delete the ones that fall out."""
    entry = {"step": step, "value": value, "path": f"step_{step:06d}"}
    ranked = sorted(kept + [entry], key=lambda c: (-c["value"], c["step"]))
    new_kept = ranked[:limit]
    if any(c["step"] == step for c in new_kept):
        checkpointer.save(model, run_dir.checkpoint(entry["path"]))
    for gone in ranked[limit:]:
        shutil.rmtree(run_dir.checkpoint(gone["path"]), ignore_errors=True)
    write_atomic(run_dir.best_list, json.dumps(new_kept, indent=1))
    return new_kept

