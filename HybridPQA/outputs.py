"""One rule for every command that writes a folder (index, export), as `RunDir` has for runs.

- A folder is ours only if it holds our own marker (`MARKER`, parsed, of the same kind): never by the
  names inside it, so a user's folder that happens to hold `corpus/` or `index.json` is not ours.
- `--output` may not be, contain or lie inside an input (the model, the checkpoint, the index read).
- A non-empty folder that is not ours is refused, with or without --overwrite; one of ours needs
  --overwrite.
- New output is built beside the old one and swapped in at the end (`files.publish_dir`), so any
  failure before the swap keeps the old output whole.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.files import check_writable, disk_error, write_atomic

BUILDING = ".building"  # a new output is built in .<name>.building beside it
MARKER = ".hybridpqa-output.json"  # {"kind": "index" | "export" | "pyserini", "id"}: in every folder we create


def _marker(folder: Path) -> dict:
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return marker if isinstance(marker, dict) else {}


def final_name(folder: Path) -> str:
    """The name of the output `folder` is built for (itself, or the output a `staging` folder replaces)."""
    name = Path(folder).name
    return name[1:-len(BUILDING)] if name.startswith(".") and name.endswith(BUILDING) else name


def kind_of(folder: Path) -> str | None:
    """The kind our marker gives `folder`, or None (no marker, or not one of ours)."""
    kind = _marker(folder).get("kind")
    return kind if isinstance(kind, str) else None


def id_of(folder: Path) -> str | None:
    """The id our marker gives `folder` (an index's: what its database collection carries), or None."""
    found = _marker(folder).get("id")
    return found if isinstance(found, str) and re.fullmatch(r"[0-9a-f]{16}", found) else None


def claim(output: str | Path, kind: str, overwrite: bool, inputs: list[str | Path] = (), flag: str = "--output",
          resumable: Callable[[Path], bool] | None = None) -> Path:
    """Check `output` before any work is done; returns it resolved (`.` and symlinks are fine).
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
    if path.is_dir() and any(path.iterdir()) and kind_of(path) not in (None, kind):
        raise InputError(f"{flag}={output}: holds a HybridPQA {kind_of(path)}, not {article(kind)} {kind}; it is "
                         "never replaced by another kind; choose another folder")
    if path.is_dir() and any(path.iterdir()) and not (resumable is not None and resumable(path)):
        if kind_of(path) != kind:
            raise InputError(f"{flag}={output}: a folder that is not empty and not a HybridPQA {kind} (no {MARKER}); "
                             "it is never replaced, --overwrite or not; choose a new or empty folder")
        if not overwrite:
            raise InputError(f"{flag}={output}: already holds {article(kind)} {kind}; pass --overwrite to replace it")
    check_writable(path.parent if not path.exists() else path, what=f"the {kind}", flag=flag)
    return path


def article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


def staging(output: Path, kind: str, fresh: bool = True) -> Path:
    """The folder new output is built in, beside `output` and marked as ours from the start (one name,
    so an interrupted build resumes and the processes of a torchrun job share it). `fresh`: an
    earlier, interrupted build there (ours: its marker) is deleted first; else it is continued. The
    new output keeps `output`'s id (an index's database collection is its folder's)."""
    built = output.with_name(f".{output.name}{BUILDING}")
    if built.exists():
        if kind_of(built) != kind:
            raise InputError(f"{built}: exists and is not a HybridPQA {kind} being built; move it away, then retry")
        if fresh:
            shutil.rmtree(built)
    given = id_of(output) if kind_of(output) == kind else None
    if not built.exists():  # made whole beside it, then renamed in: a kill never leaves it without its marker
        tmp = built.with_name(f"{built.name}.{os.getpid()}.tmp")
        mark(tmp, kind, given)
        try:
            tmp.rename(built)
        except OSError:  # another process of the job made it first
            shutil.rmtree(tmp, ignore_errors=True)  # this call's own, just made
    mark(built, kind, given)
    return built


def mark(folder: Path, kind: str, given_id: str | None = None) -> str:
    """Write our marker into `folder` (created if missing), with the folder's id: kept where it has
    one, else `given_id` or a new random one. -> the id."""
    folder.mkdir(parents=True, exist_ok=True)
    current = id_of(folder) if kind_of(folder) == kind else None
    if current is None or (given_id is not None and given_id != current):
        current = given_id or secrets.token_hex(8)
        write_atomic(folder / MARKER, json.dumps({"kind": kind, "id": current}))
    return current


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
    if old.is_dir() and kind_of(old) == kind:
        shutil.rmtree(old)
    elif old.is_dir() and not any(old.iterdir()):  # the empty folder the user named
        old.rmdir()
