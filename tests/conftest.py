"""Shared fixtures: the real splade-tiny (copied from ../shared or fetched by set-up) and small data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never need the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def splade_tiny() -> Path:
    from HybridPQA.data.assets import fetch_model

    return fetch_model(REPO / "models")


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The real all-MiniLM-L6-v2: a trained dense sentence encoder without an MLM head."""
    from HybridPQA.data.assets import fetch_model

    return fetch_model(REPO / "models", "all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def raw_data() -> Path:
    from HybridPQA.data.assets import fetch_dataset

    for name in ("hetpqa", "epqa", "scifact"):
        fetch_dataset(name, REPO / "data" / "raw")
    return REPO / "data" / "raw"


@pytest.fixture(scope="session")
def product_qa(raw_data, tmp_path_factory) -> Path:
    from HybridPQA.data.prepare import prepare_product_qa

    out = tmp_path_factory.mktemp("product-qa")
    prepare_product_qa(raw_data / "hetpqa", out)
    return out


@pytest.fixture(scope="session")
def small_beir(raw_data, tmp_path_factory) -> Path:
    """A real SciFact slice: 40 test queries, their positives plus 300 other abstracts."""
    src, out = raw_data / "scifact", tmp_path_factory.mktemp("beir")
    qrels = [l.split("\t") for l in (src / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    qids = list(dict.fromkeys(q for q, _, _ in qrels))[:40]
    keep = {d for q, d, _ in qrels if q in qids}
    lines = (src / "corpus.jsonl").read_text().splitlines()
    corpus = [l for l in lines if json.loads(l)["_id"] in keep] + [l for l in lines[:300] if json.loads(l)["_id"] not in keep]
    (out / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    queries = [l for l in (src / "queries.jsonl").read_text().splitlines() if json.loads(l)["_id"] in qids]
    (out / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (out / "qrels").mkdir()
    rows = ["query-id\tcorpus-id\tscore"] + ["\t".join(r) for r in qrels if r[0] in qids]
    (out / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return out


@pytest.fixture(scope="session")
def tuned_scifact(splade_tiny, small_beir, tmp_path_factory) -> Path:
    """One short training run shared by the tests that need *a* trained hybrid: SciFact's hybrid
    recipe on the SciFact slice (its test questions as training pairs, 30 % carved off for val),
    4 steps, FUSION.TUNE on, no FLOPs or latency measured; -> the run directory (its best checkpoint in checkpoints/best.json)."""
    from HybridPQA.cli import main

    out = tmp_path_factory.mktemp("tuned")
    recipe = (REPO / "configs" / "experiments" / "scifact_hybrid.yaml").read_text().splitlines()
    config = out / "scifact_hybrid.yaml"  # the recipe without mined negatives (in-batch and random ones)
    config.write_text("\n".join(line for line in recipe if "HARD_NEGATIVES" not in line) + "\n")
    main(["train", f"--output={out}", f"--data={small_beir}", f"--config={config}",
          "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "PRECISION", "fp32",
          "RETRIEVER.DATA.TRAIN_DATA_PATH", "qrels/test.tsv", "RETRIEVER.DATA.VAL_FROM_TRAIN", "0.3",
          "RETRIEVER.MODEL.CONTEXT_MAX_LENGTH", "128",
          "RETRIEVER.SOLVER.TOTAL_TRAIN_STEPS", "4", "RETRIEVER.SOLVER.NUM_STEP_PER_EVAL", "4",
          "RETRIEVER.SOLVER.OPTIMIZER.WARMUP_STEPS", "1", "RETRIEVER.SOLVER.OPTIMIZER.BASE_LR", "1e-3",
          "RETRIEVER.MEASURE_COST", "False"])  # the quick tier measures no latency
    return out / "scifact_hybrid"
