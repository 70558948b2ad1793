"""One inference stack: a checkpoint copied anywhere is evaluated, indexed + searched and served by
the API alike; the head table is the one place heads are defined; the training loop syncs with the
host once per log interval, never per micro-batch."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from HybridPQA.api import SearchIndex
from HybridPQA import HybridRetriever
from HybridPQA.cli import main
from HybridPQA.evaluation.metrics import score_run
from HybridPQA.data.trec import read_qrels
from HybridPQA.heads import HEADS, SCORER_HEADS
from HybridPQA.modeling.card import check_card
from HybridPQA.modeling.pretrained import SavedModel
from HybridPQA.scoring import Fusion

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # trains (the shared fixture) and evaluates end to end
def test_tuned_checkpoint_copied_out_of_its_run_scores_the_same_everywhere(tuned_scifact, small_beir, tmp_path):
    run = tuned_scifact
    best = run / "checkpoints" / json.loads((run / "checkpoints" / "best.json").read_text())[0]["path"]
    tuned = Fusion.load(run / "fusion.json")
    copy = tmp_path / "elsewhere" / "model"  # out of its run: no fusion.json beside it any more
    shutil.copytree(best, copy)
    assert SavedModel(copy).fusion(None) == tuned  # the checkpoint itself records the tuned fusion
    card = check_card(best)  # and its card, the test metrics as a model-index
    hybrid = [r for r in card.data.eval_results if r.metric_name == "ndcg@10 (hybrid)" and r.dataset_split == "test"]
    assert len(hybrid) == 1 and card.data.datasets == ["BeIR/scifact"]
    qrels, queries = small_beir / "qrels" / "test.tsv", small_beir / "queries.jsonl"

    evaluated = main(["evaluate", f"--output={tmp_path / 'eval'}", f"--data={small_beir}", f"--checkpoint={copy}",
                      "--split=test", "--env=none", "RETRIEVER.COMPUTE_FLOPS", "False"])["test"]
    assert evaluated["fusion"]["alpha"] == tuned.alpha and evaluated["fusion"]["norm"] == tuned.norm
    ndcg = evaluated["metrics"]["hybrid"]["ndcg@10"]
    assert evaluated["default_scorer"] == "hybrid"  # a trained hybrid searches with its own fusion

    main(["index", f"--model={copy}", f"--corpus={small_beir / 'corpus.jsonl'}", f"--output={tmp_path / 'ix'}"])
    main(["search", f"--index={tmp_path / 'ix'}", f"--queries={queries}", f"--output={tmp_path / 'run.trec'}"])
    searched = main(["evaluate", f"--run={tmp_path / 'run.trec'}", f"--qrels={qrels}", "--metrics=ndcg@10"])
    assert searched["metrics"]["ndcg@10"] == pytest.approx(ndcg, abs=1e-4)

    retriever = HybridRetriever.from_pretrained(copy)
    assert retriever.fusion == tuned and retriever.default_scorer == "hybrid"
    corpus = {}
    for line in (small_beir / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        corpus[doc["_id"]] = (doc.get("title", "") + " " + doc["text"]).strip()
    texts = {json.loads(line)["_id"]: json.loads(line)["text"] for line in queries.read_text().splitlines()}
    api_run = SearchIndex.build(retriever, corpus).search(texts, k=100)
    api = score_run(api_run, read_qrels(qrels), ["ndcg@10"])["ndcg@10"]
    assert api == pytest.approx(ndcg, abs=1e-4)
    print(f"\n{tuned.describe()} (configured: alpha=0.5): nDCG@10 evaluate {ndcg:.4f}, index + search "
          f"{searched['metrics']['ndcg@10']:.4f}, API {api:.4f}")


def test_head_names_are_literals_only_in_the_table_and_the_config():
    """Outside the head table and the config, a head is named by its constant (heads.DENSE, ...);
    text for people (docstrings, messages, f-strings) may say "dense"."""
    allowed = {"heads.py", "config/defaults.py", "config/validate.py", "backends.py"}  # backends: the choices table
    found = []
    for path in (REPO / "HybridPQA").rglob("*.py"):
        rel = path.relative_to(REPO / "HybridPQA").as_posix()
        tree = ast.parse(path.read_text())
        text = {id(n) for j in ast.walk(tree) if isinstance(j, ast.JoinedStr) for n in ast.walk(j)}
        found += [f"{rel}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in text
                  and n.value in HEADS and rel not in allowed]
    assert not found, found


def test_every_head_stores_scores_and_round_trips_arrays():
    torch.manual_seed(0)
    batches = {"dense": torch.randn(3, 4), "sparse": torch.relu(torch.randn(3, 7)),
               "late": torch.nn.functional.normalize(torch.randn(3, 2, 4), dim=-1)}
    for name, head in HEADS.items():
        batch = batches[name]
        stored = head.concat([head.store(batch[:2]), head.store(batch[2:])], np.array([2, 0, 1]))
        expected = head.score(batch[[2, 0, 1]].float(), batch[[2, 0, 1]].float()).numpy()
        assert np.allclose(head.matrix(stored, stored), expected, atol=1e-2 if name == "late" else 1e-5), name
        pairs = head.pairs(stored, stored, np.array([0, 1]), np.array([1, 2]))
        assert np.allclose(pairs, expected[[0, 1], [1, 2]], atol=1e-2 if name == "late" else 1e-5), name
        back = head.from_arrays(head.to_arrays(stored))
        assert head.nbytes(back) == head.nbytes(stored) > 0
    assert set(SCORER_HEADS["hybrid"]) == {"dense", "sparse"}


SYNC_PROBE = r"""
import sys, torch
from pathlib import Path
from HybridPQA.config import load_config
from HybridPQA.pipeline import train_and_test

calls = []
def counting(name):
    original = getattr(torch.Tensor, name)
    def wrapper(self, *args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if "HybridPQA" in caller and "/engine/" in caller:  # the loop's own reads of the device
            calls.append(name)
        return original(self, *args, **kwargs)
    setattr(torch.Tensor, name, wrapper)
for name in ("item", "__float__", "__bool__", "__int__", "tolist", "cpu", "numpy"):
    counting(name)
steps = int(sys.argv[3])
cfg = load_config(sys.argv[1], ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", sys.argv[2], "PRECISION", "fp32",
    "RETRIEVER.SOLVER.TOTAL_TRAIN_STEPS", str(steps), "RETRIEVER.SOLVER.LOG_STEPS", str(steps),
    "RETRIEVER.SOLVER.NUM_STEP_PER_EVAL", str(steps), "RETRIEVER.DATA.COUNT", "24", "RETRIEVER.DATA.VAL_DATA_PATH", "None",
    "RETRIEVER.SOLVER.TRAIN_BATCH_SIZE", "4", "RETRIEVER.SOLVER.OPTIMIZER.GRADIENT_ACCUMULATION_STEPS", "2",
    "RETRIEVER.DO_TEST", "False", "NUM_THREADS", "1"], dotenv_path=None)
Path(sys.argv[4]).mkdir(parents=True)
train_and_test(cfg, Path(sys.argv[4]), Path(sys.argv[5]))
print(len(calls))
"""


@pytest.mark.slow  # trains twice
def test_the_loop_reads_the_device_once_per_log_interval_not_per_micro_batch(splade_tiny, product_qa, tmp_path):
    """GPU-friendly: the loss parts stay on the device; 2 and 6 steps (2 micro-batches each) make as
    many host syncs in the loop (the log line and the save), where a per-part `.item()` would make 3x more."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the two runs side by side, a core each (NUM_THREADS 1)
    runs = [subprocess.Popen([sys.executable, "-c", SYNC_PROBE, str(REPO / "configs" / "quickstart.yaml"), str(splade_tiny),
                              str(steps), str(tmp_path / str(steps)), str(product_qa)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env) for steps in (2, 6)]
    counts = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        counts.append(int(out.split()[-1]))
    assert counts[0] == counts[1] and counts[0] < 40, counts
