"""One rule for every command that writes a folder (index, export), as `RunDir` has for runs.

- A folder is ours only if it holds our own marker (`MARKER`, parsed, of the same kind), or for an
  index written before the marker existed, an `index.json` that parses as one of ours.
- `--output` may not be, contain or lie inside an input (the model, the checkpoint, the index read).
- A non-empty folder that is not ours is refused, with or without --overwrite; one of ours needs
  --overwrite.
- New output is built beside the old one and swapped in at the end (`files.publish_dir`), so any
  failure before the swap keeps the old output whole.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.files import check_writable, disk_error, write_atomic

MARKER = ".hybridpqa-output.json"  # {"kind": "index" | "export" | "pyserini"}: written into every folder we create


def kind_of(folder: Path) -> str | None:
    """The kind our marker gives `folder`, or None (no marker, or not one of ours)."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return marker.get("kind") if isinstance(marker, dict) and isinstance(marker.get("kind"), str) else None


def claim(output: str | Path, kind: str, overwrite: bool, inputs: list[str | Path] = (), flag: str = "--output",
          legacy: Callable[[Path], bool] | None = None, resumable: Callable[[Path], bool] | None = None) -> Path:
    """Check `output` before any work is done; returns it resolved (`.` and symlinks are fine).
    `legacy(folder)`: whether a folder without the marker is still ours (an index from before it);
    `resumable(folder)`: an interrupted build of ours, continued without --overwrite."""
    path = Path(output).expanduser().resolve()
    for given in inputs:
        source = Path(given).expanduser()
        if not source.exists():
            continue
        source = source.resolve()
        if path == source or path in source.parents or source in path.parents:
            raise InputError(f"{flag}={output}: is, holds or lies inside the input {given}; writing there would "
                             "overwrite what is read; choose another folder")
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag}={output}: is a file; give a folder to write the {kind} into")
    if path.is_dir() and any(path.iterdir()) and not (resumable is not None and resumable(path)):
        ours = kind_of(path) == kind or (legacy is not None and legacy(path))
        if not ours:
            raise InputError(f"{flag}={output}: a folder that is not empty and not a HybridPQA {kind} (no {MARKER}); "
                             "it is never replaced, --overwrite or not; choose a new or empty folder")
        if not overwrite:
            article = "an" if kind[0] in "aeiou" else "a"
            raise InputError(f"{flag}={output}: already holds {article} {kind}; pass --overwrite to replace it")
    check_writable(path.parent if not path.exists() else path)
    return path


def staging(output: Path, kind: str, fresh: bool = True) -> Path:
    """The folder new output is built in, beside `output` and marked as ours from the start (one name,
    so an interrupted build resumes and the processes of a torchrun job share it). `fresh`: an
    earlier, interrupted build there (ours: its marker) is deleted first; else it is continued."""
    built = output.with_name(f".{output.name}.building")
    if built.exists():
        if kind_of(built) != kind:
            raise InputError(f"{built}: exists and is not a HybridPQA {kind} being built; move it away, then retry")
        if fresh:
            shutil.rmtree(built)
    mark(built, kind)
    return built


def mark(folder: Path, kind: str) -> None:
    """Write our marker into `folder` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind_of(folder) != kind:
        write_atomic(folder / MARKER, json.dumps({"kind": kind}))


def publish(built: Path, output: Path, kind: str) -> None:
    """Mark `built` as ours and swap it in for `output`: the old output (ours: `claim` checked it) is
    moved aside under a name of this process's own, then deleted; nothing else is touched."""
    mark(built, kind)
    if built == output:
        return
    old = output.with_name(f".{output.name}.replaced-{os.getpid()}")
    try:
        if output.is_dir():
            output.rename(old)
        built.rename(output)
    except OSError as err:
        raise disk_error(output, err) from None
    if old.is_dir() and kind_of(old) in (kind, None):
        shutil.rmtree(old)
