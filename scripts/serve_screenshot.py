"""A screenshot of `hybridpqa serve`'s page with the hits of one query, taken in headless chromium.

    python scripts/serve_screenshot.py --index=output/scifact-index --query="do statins lower the risk of dementia?" \\
        --output=docs/serve.png
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time

import httpx
from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--output", default="docs/serve.png")
    parser.add_argument("--chromium", default="/usr/lib/chromium/chromium" if shutil.which("chromium") else None)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "HybridPQA.cli", "serve", f"--index={args.index}", f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(base + "/")
            page.fill("#q", args.query)
            page.click("#go")
            page.wait_for_selector(".hit", timeout=60_000)
            page.screenshot(path=args.output)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(args.output)


if __name__ == "__main__":
    main()
