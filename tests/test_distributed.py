"""DDP under torchrun with 2 gloo processes on CPU: the same loss and gradients as one process on
the combined batch, and a short training run that completes with rank 0 alone writing."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ddp_step import config, step  # noqa: E402

from HybridPQA.config import load_config  # noqa: E402
from HybridPQA.distributed import build_distributed  # noqa: E402
from HybridPQA.errors import InputError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
@pytest.mark.parametrize("broadcast,cache", [("global", None), ("local", None), ("global", "1")])
def test_two_processes_match_one_on_the_combined_batch(tmp_path, splade_tiny, product_qa, broadcast, cache):
    """Also with GradCache (chunks of 1 question per rank): the gathered negatives and the gradients
    are still those of one uncached process on the combined batch."""
    out = tmp_path / "ddp.pt"
    torchrun(str(REPO / "tests" / "ddp_step.py"), str(splade_tiny), str(product_qa), str(out),
             "SOLVER.BROADCAST", broadcast, *(["SOLVER.GRAD_CACHE_CHUNK", cache] if cache else []))
    ddp = torch.load(out, weights_only=False)
    parts, grads = step(config(str(splade_tiny), "SOLVER.BROADCAST", broadcast), str(product_qa))
    assert ddp["world"] == 2 and set(ddp["parts"]) == set(parts)
    assert {"contrastive_dense", "contrastive_sparse", "flops_q", "flops_d"} <= set(parts)
    for name, value in parts.items():
        assert ddp["parts"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert set(ddp["grads"]) == set(grads) and len(grads) > 50
    for name, grad in grads.items():
        torch.testing.assert_close(ddp["grads"][name], grad, rtol=1e-3, atol=1e-6, msg=name)
    assert sum(g.abs().sum() for g in grads.values()) > 0


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_short_distributed_run_completes(tmp_path, splade_tiny, product_qa):
    torchrun("-m", "HybridPQA.cli", "train", f"--output={tmp_path}", f"--data={product_qa}",
             f"--config={REPO / 'configs' / 'quickstart.yaml'}", "--env=none", "DISTRIBUTED", "True",
             "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "SOLVER.TOTAL_TRAIN_STEPS", "4",
             "SOLVER.NUM_STEP_PER_EVAL", "2", "SOLVER.LOG_STEPS", "1", "DATA.COUNT", "24", "NUM_THREADS", "1",
             "SOLVER.TRAIN_BATCH_SIZE", "4", "SOLVER.OPTIMIZER.WARMUP_STEPS", "1", "RETRIEVER.COMPUTE_FLOPS", "False",
             "SOLVER.GRADIENT_CHECKPOINTING", "True")
    run = tmp_path / "quickstart"
    assert json.loads((run / "results" / "test.json").read_text())["metrics"]["hybrid"]["mrr@5"] > 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines if "split" not in l] == [1, 2, 3, 4]  # one writer
    assert (run / "log.txt").read_text().count("argv:") == 1
    assert (run / "checkpoints" / "last" / "trainer.pt").is_file()


def test_distributed_needs_torchrun(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(InputError, match="needs torchrun"):
        build_distributed(load_config(None, ["DISTRIBUTED", "True"], dotenv_path=None))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="DISTRIBUTED is False"):
        build_distributed(load_config(None, [], dotenv_path=None))


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_two_process_index_equals_one_process_index(tmp_path, splade_tiny, small_beir):
    """torchrun index: each rank encodes every other shard, rank 0 merges; the arrays are identical
    to one process's."""
    import numpy as np

    from HybridPQA.cli import main

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join((small_beir / "corpus.jsonl").read_text().splitlines(keepends=True)[:70]))
    args = [f"--model={splade_tiny}", f"--corpus={corpus}", "--shard-size=16", "NUM_THREADS", "1"]
    main(["index", f"--output={tmp_path / 'one'}", *args])
    done = torchrun("-m", "HybridPQA.cli", "index", f"--output={tmp_path / 'two'}", *args)
    assert '"processes": 2' in done.stdout and '"documents": 70' in done.stdout
    for name in ("sparse/data", "sparse/indices", "sparse/indptr", "dense/vectors"):
        one, two = (np.load(tmp_path / run / f"{name}.npy") for run in ("one", "two"))
        assert np.array_equal(one, two), name
    assert json.loads((tmp_path / "one" / "sparse" / "meta.json").read_text()) == \
        json.loads((tmp_path / "two" / "sparse" / "meta.json").read_text())
