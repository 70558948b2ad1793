"""Files that survive crashes: atomic writes, checkpoint loads that name a truncated file, and an
output check before any long work starts."""
from __future__ import annotations

import errno
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import torch

from HybridPQA.errors import InputError


def write_atomic(path: str | Path, text: str) -> None:
    """Write `path` through a temporary file and a rename: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as err:
        raise disk_error(path, err) from None


def save_atomic(obj, path: str | Path) -> None:
    """torch.save through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    except OSError as err:
        raise disk_error(path, err) from None


def load_torch(path: str | Path, weights_only: bool = True, map_location="cpu"):
    """torch.load with a one-line error for a truncated or corrupt file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else err.__class__.__name__
        raise InputError(f"{path}: truncated or corrupt checkpoint file ({reason}); delete its directory and "
                         "resume from another checkpoint, or retrain") from None


def disk_error(path: Path, err: OSError) -> Exception:
    """An OSError while writing, as a one-line InputError where the cause is the user's to fix."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return InputError(f"{path}: the disk is full ({err.strerror}); free space, then run again with --resume")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"{path}: cannot write here ({err.strerror}); choose another --path_output")
    return err


def check_writable(folder: Path, need_bytes: int = 0) -> None:
    """Fail now, not after hours of training, when `folder` cannot be written or lacks `need_bytes`."""
    probe = folder / ".write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise InputError(f"{folder}: cannot write the run directory ({err.strerror or err}); "
                         "choose another --path_output") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise InputError(f"{folder}: {free / 2**30:.2f} GiB free but checkpoints need about "
                         f"{need_bytes / 2**30:.2f} GiB; free space or lower RETRIEVER.SOLVER.CP_SAVE_LIMIT")
