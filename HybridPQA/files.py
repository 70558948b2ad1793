"""Files that survive crashes: atomic writes, checkpoint loads that name a truncated file, and an
output check before any long work starts."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

from HybridPQA.errors import InputError


def jsonl_records(path: str | Path, again: str = "fix the file"):
    """The one reader of JSON-lines files: each non-blank line as (line number, the parsed value, "")
    or, where it does not parse, (line number, None, why); the caller skips or refuses it. A file
    that is not UTF-8 is one line naming it and `again` (what to do)."""
    path = Path(path)
    with path.open(encoding="utf-8-sig", errors="strict") as handle:
        try:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    yield number, json.loads(raw), ""
                except (json.JSONDecodeError, RecursionError) as err:
                    yield number, None, getattr(err, "msg", "nested too deeply")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text; {again}") from None


def write_atomic(path: str | Path, text: str) -> None:
    """Write `path` through a temporary file (named by this process, so concurrent writers never share
    one) and a rename: readers see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as err:
        raise disk_error(path, err) from None


def publish_dir(tmp: Path, final: Path) -> None:
    """Replace the directory `final` by the complete directory `tmp`: move final to final.old, tmp
    to final, delete final.old. A crash at any point leaves one whole copy (final, or final.old)."""
    old = final.with_name(final.name + ".old")
    try:
        if final.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        raise disk_error(final, err) from None


def digest_of(digests: dict[str, str]) -> str:
    """One sha256 naming a set of files by their own ({name: sha256}): a model's identity."""
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_atomic(obj, path: str | Path) -> None:
    """torch.save through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    import torch  # here, not at the top: the config and the commands' checks load without torch

    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    except OSError as err:
        raise disk_error(path, err) from None


def load_torch(path: str | Path, map_location="cpu"):
    """torch.load of tensors and plain values only (`weights_only`: a file never runs code), with a
    one-line error for a file that holds anything else, or is truncated or corrupt."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise InputError(f"{path}: refused: it holds Python objects, not just tensors and plain values, and loading "
                             "it could run code; use a checkpoint this version of HybridPQA wrote") from None
        raise InputError(f"{path}: truncated or corrupt checkpoint file ({_first_line(err)}); delete its directory "
                         "and resume from another checkpoint, or retrain") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise InputError(f"{path}: truncated or corrupt checkpoint file ({_first_line(err)}); delete its directory "
                         "and resume from another checkpoint, or retrain") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:120] if str(err).strip() else err.__class__.__name__


def disk_error(path: Path, err: OSError) -> Exception:
    """An OSError while writing, as a one-line InputError where the cause is the user's to fix."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return InputError(f"{path}: the disk is full ({err.strerror}); free space, then run the command again "
                          "(training continues with --resume; an evaluation or index starts again)")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"{path}: cannot write here ({err.strerror}); choose another --output")
    return err


def safe_filename(name: str) -> str:
    """`name` when it is a plain file name (letters, digits, _ . = + -, not starting with a dot),
    else `id-` and a hash of it: ids from data never choose where a file goes."""
    if re.fullmatch(r"[A-Za-z0-9_=+-][A-Za-z0-9_.=+-]{0,99}", name):
        return name
    return "id-" + hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def check_output_file(path: str | Path, flag: str) -> Path:
    """An output file path that can be written: not a directory, its folder creatable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag}={path}: is a directory; give the path of a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{flag}={path}: cannot create its folder ({err.strerror or err}); choose another path") from None
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{flag}={path}: its folder is not writable; choose another path")
    return path


def check_output_dir(path: str | Path, flag: str) -> Path:
    """An output folder that can be written (created if missing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag}={path}: is a file; give a folder to write into")
    check_writable(path, what="this folder", flag=flag)
    return path


def check_writable(folder: Path, need_bytes: int = 0, what: str = "the run directory", flag: str = "--output") -> None:
    """Fail now, not after hours of training, when `folder` (`what`, given by `flag`) cannot be written
    or lacks `need_bytes`."""
    probe = folder / f".write-test.{os.getpid()}"  # one per process: concurrent checks never unlink each other's
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise InputError(f"{folder}: cannot write {what} ({err.strerror or err}); choose another {flag}") from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise InputError(f"{folder}: {free / 2**30:.2f} GiB free but checkpoints need about "
                         f"{need_bytes / 2**30:.2f} GiB; free space or lower RETRIEVER.SOLVER.CP_SAVE_LIMIT")


@contextlib.contextmanager
def hold_lock(lock_file: Path, busy: str, advice: str):
    """Hold an exclusive flock on `lock_file` while the block runs (the OS drops it if the process
    dies); a second process gets one line: "<busy> by process <pid> ...; wait for it to finish, <advice>"."""
    handle = Path(lock_file).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise InputError(f"{busy} by process {holder} (it holds {lock_file}); wait for it to finish, {advice}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        yield
    finally:
        handle.close()
