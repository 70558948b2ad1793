#!/usr/bin/env bash
# Set up and run the whole test suite (real splade-tiny and real data, copied from ../shared
# or downloaded by the test fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python -m pytest -q --durations=15 tests "$@"
