"""`hybridpqa serve` as a child process on 127.0.0.1, for scripts and tests: started, waited for
(bounded), and stopped."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(indexes: list[str], wait_s: float = 120, output=subprocess.DEVNULL):
    """Yields (base url, process) once /health answers; the server is stopped (SIGTERM) on exit."""
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "HybridPQA.cli", "serve", *(f"--index={i}" for i in indexes),
                                f"--port={port}"], stdout=output, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"hybridpqa serve exited with status {process.returncode} before answering")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hybridpqa serve did not answer /health within {wait_s:.0f} s")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
