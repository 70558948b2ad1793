"""Training state on disk: `checkpoints/last/` for resuming, `checkpoints/step_N/` for the best N.

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
from HybridPQA.modeling import save_checkpoint


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_last(run_dir: Path, model, tokenizer, cfg, trainer: dict) -> None:
    """Replace checkpoints/last atomically: write last.tmp, then swap it in."""
    tmp, last = run_dir / "checkpoints" / "last.tmp", run_dir / "checkpoints" / "last"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tokenizer, cfg, tmp)
    torch.save({**trainer, "rng": rng_state()}, tmp / "trainer.pt")
    shutil.rmtree(last, ignore_errors=True)
    tmp.rename(last)


def load_last(run_dir: Path) -> tuple[Path, dict]:
    last = run_dir / "checkpoints" / "last"
    if not (last / "trainer.pt").is_file():
        raise InputError(f"{run_dir}: --resume needs {last}/trainer.pt, which does not exist; "
                         "start without --resume (or with --overwrite)")
    return last, torch.load(last / "trainer.pt", map_location="cpu", weights_only=False)


def keep_best(run_dir: Path, model, tokenizer, cfg, kept: list[dict], step: int, value: float, limit: int) -> list[dict]:
    """Save step_N if it is among the `limit` best so far; delete the ones that fall out."""
    entry = {"step": step, "value": value, "path": f"step_{step:06d}"}
    ranked = sorted(kept + [entry], key=lambda c: (-c["value"], c["step"]))
    new_kept = ranked[:limit]
    if any(c["step"] == step for c in new_kept):
        save_checkpoint(model, tokenizer, cfg, run_dir / "checkpoints" / entry["path"])
    for gone in ranked[limit:]:
        shutil.rmtree(run_dir / "checkpoints" / gone["path"], ignore_errors=True)
    (run_dir / "checkpoints" / "best.json").write_text(json.dumps(new_kept, indent=1))
    return new_kept


def best_checkpoint(run_dir: Path) -> Path:
    """The best kept checkpoint, else `last`."""
    best = run_dir / "checkpoints" / "best.json"
    kept = json.loads(best.read_text()) if best.is_file() else []
    return run_dir / "checkpoints" / (kept[0]["path"] if kept else "last")
