"""A screenshot of a sweep's study in optuna-dashboard, the storage opened unchanged, in headless chromium.

    python scripts/sweep_dashboard.py --storage=sqlite:///output/sweeps/tpe/study.db --output=docs/sweep_dashboard.png
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import time
import urllib.request

from playwright.sync_api import sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="the study's storage URL, as given to hybridpqa sweep")
    parser.add_argument("--study", type=int, default=1, help="the study's id in the dashboard (1: the first)")
    parser.add_argument("--output", default="docs/sweep_dashboard.png")
    parser.add_argument("--chromium", default="/usr/lib/chromium/chromium" if shutil.which("chromium") else None)
    args = parser.parse_args()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([shutil.which("optuna-dashboard") or "optuna-dashboard", args.storage, "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):  # bounded: up to 60 s for the server to answer
            try:
                studies = urllib.request.urlopen(base + "/api/studies", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit(f"optuna-dashboard did not answer on {base}")
        print(studies[:300])
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{base}/dashboard/studies/{args.study}")
            page.wait_for_timeout(6000)  # the plots draw after the data loads
            page.screenshot(path=args.output, full_page=False)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(args.output)


if __name__ == "__main__":
    main()
