#!/usr/bin/env bash
# Set up, prepare the product-QA data and splade-tiny, train the hybrid, evaluate, print the table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
hybridpqa prepare
hybridpqa evaluate --output=output --data=data/product-qa --config=configs/zero_shot.yaml --overwrite
hybridpqa train --output=output --data=data/product-qa --config=configs/quickstart.yaml --overwrite
