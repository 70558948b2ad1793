"""Device, threads, progress bars, seeding and logging, decided once from the config and the machine.
(Precision has its own module: `precision`, measured by a probe.)"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from yacs.config import CfgNode

from HybridPQA.errors import InputError

log = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset restrict)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """The process's share of its cores: all of them, divided among the processes of a torchrun job."""
    return max(1, available_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


KERNEL_CACHE = 32  # oneDNN (ideep) kernels kept per process; its default, 1024, grows a server's memory


def bound_kernel_cache() -> None:
    """Keep at most KERNEL_CACHE of oneDNN's compiled bf16 kernels (ideep's LRU_CACHE_CAPACITY, read at
    the first bf16 matmul; a value in the environment wins). Each new input shape adds one, with its
    buffers: with the default 1024, a server encoding queries of every batch size and length grew
    ~500 MB over its first 10,000 queries; with 32 it stays flat after warm-up (docs/benchmarks.md)."""
    os.environ.setdefault("LRU_CACHE_CAPACITY", str(KERNEL_CACHE))


def configure_threads(num_threads: int = 0) -> int:
    """Set torch's intra-op threads (0 = `default_threads()`), and keep the Rust tokenizers from
    spawning their own pool on the same cores. Returns the thread count."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    bound_kernel_cache()
    threads = num_threads or default_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def build_device(cfg: CfgNode, ranks=None) -> torch.device:
    """DEVICE; under torchrun "auto" and "cuda" mean this rank's own GPU (LOCAL_RANK). Sets threads too."""
    threads = configure_threads(cfg.NUM_THREADS)
    log.info("threads: %d (%s; %d cores available)", threads, "NUM_THREADS" if cfg.NUM_THREADS else "default",
             available_cores())
    if cfg.DEVICE in ("auto", None, "cuda") and torch.cuda.is_available() and ranks is not None:
        return torch.device("cuda", ranks.local_rank)
    if cfg.DEVICE in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"config: DEVICE = {cfg.DEVICE!r} but no CUDA device is visible; use 'cpu' or 'auto'")
    return torch.device(cfg.DEVICE)


def progress_enabled() -> bool:
    """Progress bars on a terminal, never in CI or when stderr is a file or a pipe."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress(iterable=None, enabled: bool = True, **kwargs):
    """A tqdm bar, shown when `enabled` and `progress_enabled()`."""
    from tqdm import tqdm

    kwargs["disable"] = not (enabled and progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_logging(run_dir: Path | None = None, main: bool = True) -> None:
    """Console and (with a run directory) log.txt; called by the command line, never at import.
    Ranks other than 0 (`main` False) log warnings and errors to the console only."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if main else logging.WARNING)
    run_dir = run_dir if main else None
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None:
        handlers.append(logging.FileHandler(Path(run_dir) / "log.txt"))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    for noisy in ("transformers", "httpx", "urllib3", "numba", "bm25s", "faiss", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # libraries' Python warnings (ranx's numba type casts, ...) go to the log at DEBUG, not the console
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)


def log_environment(argv: list[str] | None) -> None:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    log.info("argv: %s", " ".join(argv or sys.argv))
    log.info("python %s, torch %s, transformers %s, %s, git %s", platform.python_version(), torch.__version__,
             transformers.__version__, platform.platform(), commit or "unknown")


@contextlib.contextmanager
def quiet_libraries():
    """Third-party chatter off for the block (transformers' load reports and progress bars, library
    UserWarnings), restored after; for the Python API and exports, which may run without
    `setup_logging`. The project's own log lines are untouched."""
    verbosity = transformers.utils.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"(sentence_transformers|transformers|torch)")
            yield
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
