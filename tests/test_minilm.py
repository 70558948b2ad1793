"""A 22.7 M-parameter backbone without an MLM head (the real all-MiniLM-L6-v2): its new head is warmed
up, then it trains as a hybrid with GradCache, evaluates, serves through the API and exports to
sentence-transformers equal to ours."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from HybridPQA.api import SearchIndex
from HybridPQA import HybridRetriever
from HybridPQA.cli import main
from HybridPQA.modeling.encode import encode
from HybridPQA.modeling.st_export import export_sentence_transformers

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["do statins lower the risk of dementia?",
         "Statin use was associated with a reduced risk of dementia in a cohort of 3,000 older adults."]


@pytest.mark.slow  # trains and evaluates end to end
def test_minilm_hybrid_warms_up_trains_evaluates_serves_and_exports(minilm, small_beir, tmp_path):
    results = main(["train", f"--output={tmp_path}", f"--data={small_beir}", "--env=none",
                    f"--config={REPO / 'configs' / 'experiments' / 'scifact_minilm_hybrid.yaml'}",
                    "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(minilm), "DATA.HARD_NEGATIVES_RUN", "None",
                    "PRECISION", "fp32", "DATA.TRAIN_DATA_PATH", "qrels/test.tsv", "DATA.VAL_FROM_TRAIN", "0.3",
                    "MODEL.QUESTION_MAX_LENGTH", "32", "MODEL.CONTEXT_MAX_LENGTH", "64",
                    "SOLVER.TOTAL_TRAIN_STEPS", "3", "SOLVER.NUM_STEP_PER_EVAL", "3", "SOLVER.TRAIN_BATCH_SIZE", "4",
                    "SOLVER.OPTIMIZER.WARMUP_STEPS", "1", "SOLVER.GRAD_CACHE_CHUNK", "2",
                    "MODEL.MLM_WARMUP.STEPS", "6", "MODEL.MLM_WARMUP.BATCH_SIZE", "8", "COMPUTE_FLOPS", "False"])
    run = tmp_path / "scifact_minilm_hybrid"
    said = (run / "log.txt").read_text()
    assert "has no MLM head" in said and "as the identity" in said and "MLM warm-up (head, 6 steps of 8 texts)" in said
    assert 0 < results["test"]["metrics"]["dense"]["ndcg@10"] <= 1 and results["test"]["default_scorer"] == "hybrid"
    best = run / "checkpoints" / json.loads((run / "checkpoints" / "best.json").read_text())[0]["path"]

    retriever = HybridRetriever.from_pretrained(best, ["PRECISION", "fp32"])
    assert retriever.encoding.pooling == "mean" and retriever.default_scorer == "hybrid"
    hits = SearchIndex.build(retriever, {"a": TEXTS[1], "b": "a wool sweater"}).search(TEXTS[0], k=2)
    assert [d for d, _ in hits] == ["a", "b"]
    out = tmp_path / "st"
    assert export_sentence_transformers(retriever.encoder, out) == ["sparse", "dense"]
    from sentence_transformers import SentenceTransformer, SparseEncoder

    e = retriever.encoder
    ours = encode(e.model, e.tokenizer, "query", TEXTS, e.encoding.max_length("query"), 8, e.device)
    got = SparseEncoder(str(out / "sparse")).encode_query(TEXTS, convert_to_tensor=True).to_dense().numpy()
    assert np.abs(got - ours["sparse"].toarray()).max() < 1e-5
    assert np.abs(SentenceTransformer(str(out / "dense")).encode_query(TEXTS) - ours["dense"].numpy()).max() < 1e-5
