"""A screenshot of `hybridpqa serve`'s page with the hits of one query, taken in headless chromium.

    python scripts/serve_screenshot.py --index=output/scifact-index --query="do statins lower the risk of dementia?" \\
        --output=docs/serve.png
"""
from __future__ import annotations

import argparse
import shutil

from playwright.sync_api import sync_playwright

from HybridPQA.serving.process import running_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--output", default="docs/serve.png")
    parser.add_argument("--chromium", default="/usr/lib/chromium/chromium" if shutil.which("chromium") else None)
    args = parser.parse_args()
    with running_server([args.index]) as (base, _):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(base + "/")
            page.fill("#q", args.query)
            page.click("#go")
            page.wait_for_selector(".hit", timeout=60_000)
            page.screenshot(path=args.output)
            browser.close()
    print(args.output)


if __name__ == "__main__":
    main()
