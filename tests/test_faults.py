"""Surviving faults: kill -9 then --resume, torn and truncated files, non-finite losses, an
unwritable or full output disk."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from HybridPQA import files
from HybridPQA.config import load_config
from HybridPQA.engine import checkpoint as ckpt
from HybridPQA.engine import train as train_module
from HybridPQA.pipeline import train_and_test
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import setup_logging
from HybridPQA.engine.schedule import _truncate_metrics
from HybridPQA.errors import InputError
from HybridPQA.modeling import build_checkpointer, build_model
from HybridPQA.modeling.saved import load_weights

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quickstart.yaml")


def small(model: Path, steps: int) -> list[str]:
    return ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model), "SOLVER.TOTAL_TRAIN_STEPS", str(steps),
            "SOLVER.NUM_STEP_PER_EVAL", "2", "SOLVER.LOG_STEPS", "1", "DATA.COUNT", "24",
            "SOLVER.TRAIN_BATCH_SIZE", "4", "SOLVER.OPTIMIZER.WARMUP_STEPS", "1", "NUM_THREADS", "1",
            "RETRIEVER.COMPUTE_FLOPS", "False"]


def _train_command(out: Path, data: Path, model: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "HybridPQA.cli", "train", f"--output={out}", f"--data={data}",
            f"--config={QUICK}", "--env=none", *extra, *small(model, 10), "EXP", name]


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_kill_9_then_resume_reaches_the_same_metrics(tmp_path, splade_tiny, product_qa):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one_thread = ("NUM_THREADS", "1")  # one thread each: the straight and the killed run share the 2 cores
    straight = subprocess.Popen(_train_command(tmp_path, product_qa, splade_tiny, "straight", *one_thread), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = subprocess.Popen(_train_command(tmp_path, product_qa, splade_tiny, "killed", *one_thread), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = tmp_path / "killed" / "metrics.jsonl", time.time() + 300
    while time.time() < deadline and killed.poll() is None:  # kill it mid-training, after a checkpoint
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        if any(json.loads(l)["step"] >= 5 for l in lines if l.endswith("}")):
            break
        time.sleep(0.05)
    assert killed.poll() is None, "training finished before it could be killed; the test needs a longer run"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert straight.wait(timeout=600) == 0, straight.stderr.read()[-2000:]
    assert not (tmp_path / "killed" / "results" / "test.json").exists()
    resumed = subprocess.run(_train_command(tmp_path, product_qa, splade_tiny, "killed", "--resume", *one_thread), env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at step" in (tmp_path / "killed" / "log.txt").read_text()
    for split in ("dev", "test"):
        a, b = (json.loads((tmp_path / n / "results" / f"{split}.json").read_text()) for n in ("straight", "killed"))
        assert a["metrics"] == b["metrics"], split
    a, b = ((tmp_path / n / "metrics.jsonl").read_text() for n in ("straight", "killed"))
    assert a == b  # every step logged once, with the same losses


@pytest.fixture(scope="module")
def checkpoint(splade_tiny, tmp_path_factory) -> Path:
    cfg = load_config(QUICK, small(splade_tiny, 2), dotenv_path=None)
    model, tokenizer = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "step_000001"
    build_checkpointer(cfg, tokenizer).save(model, path)
    return path


def test_truncated_checkpoint_is_a_clear_error(checkpoint, tmp_path):
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(checkpoint), str(broken)], check=True)
    weights = broken / "query" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    cfg = load_config(broken / "config.yaml", dotenv_path=None)
    with pytest.raises(InputError, match=r"query/model.safetensors: missing or not the weights .* damaged"):
        build_model(cfg, checkpoint=broken)  # its sha256 no longer matches hybridpqa.json
    manifest = json.loads((broken / "hybridpqa.json").read_text())
    del manifest["weights"]  # a checkpoint from before the digests: transformers' own reader still says why
    (broken / "hybridpqa.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"query: cannot load its weights \(.*\); the folder is damaged"):
        build_model(cfg, checkpoint=broken)
    with pytest.raises(InputError, match=r"query: unreadable weights"):  # resuming reads the same folders
        load_weights(build_model(cfg)[0], broken)
    run = tmp_path / "run"
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "checkpoints" / "last" / "trainer.pt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(InputError, match=r"trainer.pt: truncated or corrupt"):
        ckpt.load_last(run)


def test_crash_between_the_swaps_of_last_keeps_a_copy(tmp_path):
    old = tmp_path / "checkpoints" / "last.old"
    old.mkdir(parents=True)
    torch.save({"step": 4}, old / "trainer.pt")
    last, state = ckpt.load_last(tmp_path)
    assert last == old and state["step"] == 4


def test_torn_metrics_line_is_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    _truncate_metrics(path, 2)
    assert [json.loads(l)["step"] for l in path.read_text().splitlines()] == [1, 2]


@pytest.mark.slow  # trains or evaluates end to end
def test_non_finite_loss_stops_naming_step_and_part(tmp_path, splade_tiny, product_qa, monkeypatch):
    real = train_module.loss_parts

    def poisoned(*args, **kwargs):
        parts, sparse = real(*args, **kwargs)
        if args[6] >= 2:  # the step: from the third on, one part is NaN
            parts["flops_q"] = parts["flops_q"] * float("nan")
        return parts, sparse

    monkeypatch.setattr(train_module, "loss_parts", poisoned)
    cfg = load_config(QUICK, small(splade_tiny, 6) + ["RETRIEVER.DO_TEST", "False"], dotenv_path=None)
    run_dir = RunDir.at(tmp_path, cfg.EXP).prepare(cfg)
    setup_logging(run_dir)
    with pytest.raises(InputError, match=r"step 3: loss part flops_q is nan.*last good checkpoint"):
        train_and_test(cfg, run_dir, product_qa)
    last, state = ckpt.load_last(run_dir)
    assert state["step"] == 2
    weights = build_model(cfg, checkpoint=last)[0].state_dict()
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_unwritable_output_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cfg = load_config(QUICK, dotenv_path=None)
    with pytest.raises(InputError, match="cannot write the run directory.*choose another --output"):
        RunDir.at(blocker / "out", cfg.EXP).prepare(cfg)


def test_full_disk_fails_before_training(tmp_path, splade_tiny, product_qa, monkeypatch):
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1 << 20})())
    cfg = load_config(QUICK, small(splade_tiny, 2), dotenv_path=None)
    run_dir = RunDir.at(tmp_path, cfg.EXP).prepare(cfg)
    with pytest.raises(InputError, match=r"GiB free but checkpoints need about .*CP_SAVE_LIMIT"):
        train_and_test(cfg, run_dir, product_qa)
    assert not (run_dir / "metrics.jsonl").exists()


def test_disk_filling_up_mid_write_is_a_clear_error(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(InputError, match="the disk is full.*--resume"):
        files.write_atomic(tmp_path / "results.json", "{}")
    assert not (tmp_path / "results.json").exists()


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "HybridPQA.cli", *argv]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["index", "export-st", "export-pyserini"])
def test_a_write_killed_midway_keeps_the_old_output_and_a_rerun_completes(kind, checkpoint, small_beir, tmp_path):
    """kill -9 of each folder-writing command while it builds the replacement (its `.NAME.building`
    folder exists): the old output is untouched and still whole; the same command again finishes.
    (`index --engine=qdrant` and `export --format=onnx` build and publish the same way; a collection
    killed mid-write: test_database.)"""
    corpus, out, ix = tmp_path / "corpus.jsonl", tmp_path / "out", tmp_path / "ix"
    corpus.write_text("\n".join((small_beir / "corpus.jsonl").read_text().splitlines()[:64]) + "\n")
    index = ["index", f"--model={checkpoint}", f"--corpus={corpus}", "--shard-size=16", "NUM_THREADS", "1"]
    if kind == "export-pyserini":  # 30,000 random documents: writing them outlasts the wait for the building folder
        import scipy.sparse as sp

        from HybridPQA.retrieval.index import SparseIndex

        docs = sp.random(30_000, 2_000, density=0.02, format="csr", random_state=0, dtype=np.float32)
        SparseIndex.build(docs, [f"d{i}" for i in range(30_000)], [f"t{j}" for j in range(2_000)]).save(ix / "sparse")
    argv = {"index": [*index, f"--output={out}"],
            "export-st": ["export", f"--checkpoint={checkpoint}", f"--output={out}"],
            "export-pyserini": ["export", f"--index={ix / 'sparse'}", f"--output={out}"]}[kind]
    first = subprocess.run(_cli(*argv), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    before, building = _tree(out), tmp_path / ".out.building"
    killed = subprocess.Popen(_cli(*argv, "--overwrite"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None and not building.exists():
        time.sleep(0.01)
    assert killed.poll() is None, "the command finished before it could be killed; give it more to write"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert _tree(out) == before  # the old output, whole
    again = subprocess.run(_cli(*argv, "--overwrite"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not building.exists() and not list(tmp_path.glob(".out.replaced-*"))
    if kind.startswith("index"):
        searched = subprocess.run(_cli("search", f"--index={out}", "--query=vitamin d", "--k=3"), capture_output=True,
                                  text=True, timeout=600)
        assert searched.returncode == 0 and "1." in searched.stdout, searched.stderr[-2000:]
