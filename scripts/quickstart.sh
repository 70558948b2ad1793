#!/usr/bin/env bash
# Set up, prepare the product-QA data and splade-tiny, train the hybrid, evaluate, print the table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
hybridpqa prepare
hybridpqa evaluate --path_output=output --path_data=data/product-qa --path_cfg_exp=configs/zero_shot.yaml --overwrite
hybridpqa train --path_output=output --path_data=data/product-qa --path_cfg_exp=configs/quickstart.yaml --overwrite
