"""A point's or a trial's `hybridpqa` process: pinned to its share of the cores, its output in a
log file, and killed with the sweep worker (so a worker killed with SIGKILL leaves no orphan)."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path


def core_shares(jobs: int) -> list[set[int]]:
    """The process's cores split into `jobs` near-equal sets (sets are shared when cores are fewer)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning
        return [set()] * jobs
    if jobs >= len(cores):
        return [{cores[i % len(cores)]} for i in range(jobs)]
    return [set(cores[i * len(cores) // jobs:(i + 1) * len(cores) // jobs]) for i in range(jobs)]


def _die_with_parent() -> None:  # in the child, before exec: SIGKILL when the worker dies
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the child may outlive a killed worker


def launch(command: list[str], log_file: Path, cores: set[int] | None = None) -> subprocess.Popen:
    """Start `command` with its output appended to `log_file`, pinned to `cores` before it imports torch."""
    with log_file.open("a") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                 preexec_fn=_die_with_parent if os.name == "posix" else None)
    if cores:  # before the child has imported torch, so its threads inherit the set
        try:
            os.sched_setaffinity(child.pid, cores)
        except OSError:
            pass  # it exited already
    return child
