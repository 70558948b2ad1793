#!/usr/bin/env bash
# Install HybridPQA and its dependencies (idempotent). torch is pinned first so that pip takes
# the local CPU build where there is one, and never replaces an installed torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -r requirements/test.txt
python -m pip install -q --no-deps -e .
# The search page's browser test drives the system chromium headless (Playwright never downloads one);
# the sweep tests start a PostgreSQL server on 127.0.0.1 (Debian's postgresql-15).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql-15)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "setup: ${missing[*]} could not be installed; the tests that need them skip and say so" >&2
fi
