#!/usr/bin/env bash
# The paper's claim on our product-QA split: hybrid vs dense-only vs sparse-only, after equal
# training (the quickstart and its twins), next to splade-tiny zero-shot. About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output}
hybridpqa prepare > /dev/null
hybridpqa evaluate --output="$OUT" --data=data/product-qa --config=configs/zero_shot.yaml --overwrite > /dev/null
for exp in quickstart quickstart_dense quickstart_sparse; do
  hybridpqa train --output="$OUT" --data=data/product-qa --config=configs/$exp.yaml --overwrite > /dev/null
done
python scripts/results_table.py --split=test "$OUT"/zero_shot "$OUT"/quickstart "$OUT"/quickstart_dense "$OUT"/quickstart_sparse
