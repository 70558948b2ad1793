#!/usr/bin/env bash
# SciFact from splade-tiny: mine hard negatives for the training questions with the zero-shot
# model, then train the hybrid and its dense-only and sparse-only twins (configs/experiments/
# scifact_*.yaml), and print the test table. About an hour on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output}
DATA=data/raw/scifact
[ -f "$DATA/corpus.jsonl" ] || bash scripts/setup.sh
if [ ! -f "$DATA/mined/splade-tiny/runs/train.sparse.trec" ]; then
  hybridpqa evaluate --output="$DATA/mined" --data="$DATA" --split=train \
    --config=configs/zero_shot_scifact.yaml --overwrite EXP splade-tiny \
    RETRIEVER.SOLVER.FUNC cosine RETRIEVER.SOLVER.TOP_RETRIEVE_COUNT 50 RETRIEVER.COMPUTE_FLOPS False > /dev/null
fi
for exp in scifact_hybrid scifact_dense scifact_sparse; do
  hybridpqa train --output="$OUT" --data="$DATA" --config=configs/experiments/$exp.yaml --overwrite > /dev/null
done
python scripts/results_table.py --split=test --metrics=ndcg@10,recall@100,mrr@5,map "$OUT"/scifact_hybrid "$OUT"/scifact_dense "$OUT"/scifact_sparse
