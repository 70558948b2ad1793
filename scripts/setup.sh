#!/usr/bin/env bash
# Install HybridPQA and its dependencies (idempotent). torch is pinned first so that pip takes
# the local CPU build where there is one, and never replaces an installed torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -r requirements/test.txt
python -m pip install -q --no-deps -e .
