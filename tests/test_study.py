"""A search as an Optuna study: workers in separate processes join one storage (a file, and a real
PostgreSQL server started here on 127.0.0.1), a diverging trial is pruned at its first report, a
worker killed outright has its trial failed by heartbeat and retried, and the dashboard reads it."""
import csv
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here trains


def write_search(tmp_path: Path, splade_tiny: Path, product_qa: Path, search: dict, space: dict | None = None,
                 points: list | None = None) -> Path:
    body = {"BASE": str(REPO / "configs" / "quickstart.yaml"), "DATA": str(product_qa),
            "SET": {"RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE": str(splade_tiny), "SOLVER.TOTAL_TRAIN_STEPS": 4,
                    "SOLVER.NUM_STEP_PER_EVAL": 2, "DATA.COUNT": 24, "SOLVER.TRAIN_BATCH_SIZE": 4,
                    "SOLVER.OPTIMIZER.WARMUP_STEPS": 1, "NUM_THREADS": 1, "RETRIEVER.COMPUTE_FLOPS": False,
                    "PRECISION": "fp32"},
            "SEARCH": search, "METRICS": ["mrr@5"],
            "SPACE": space or {"SOLVER.OPTIMIZER.BASE_LR": {"LOW": 1e-5, "HIGH": 1e-3, "LOG": True},
                               "SOLVER.TEMPERATURE": {"LOW": 0.02, "HIGH": 0.2}, "SOLVER.ALPHA": [0.3, 0.5, 0.7]}}
    if points:
        body["POINTS"] = points
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def worker(sweep: Path, output: Path, storage: str, *flags: str) -> subprocess.Popen:
    """A `hybridpqa sweep` process, as a worker on another machine would run it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "HybridPQA.cli", "sweep", f"--config={sweep}",
                             f"--output={output}", f"--storage={storage}", "--study=s", *flags],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: int = 400) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1 for this module (Debian's postgresql-15, as the set-up installs)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1] or not Path(found[-1]).is_file():
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs postgresql-15 where apt-get runs as root)")
    bin_dir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="hpqa-pg-"))  # pytest's own folders are closed to the server's user
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "hpqa"], check=True,
                   capture_output=True)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(folder / "log"),
                    "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start"], check=True, capture_output=True)
    yield f"postgresql://hpqa@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("kind", ["file", "postgresql"])
def test_two_workers_share_one_study(kind, tmp_path, splade_tiny, product_qa, request):
    storage = (request.getfixturevalue("postgres") if kind == "postgresql"
               else f"sqlite:///{tmp_path / 'shared' / 'study.db'}")
    (tmp_path / "shared").mkdir()
    sweep = write_search(tmp_path, splade_tiny, product_qa, {"METHOD": "random", "TRIALS": 3, "PRUNER": "none"})
    a, b = (worker(sweep, tmp_path / name, storage) for name in ("a", "b"))
    out_a, out_b = finish(a), finish(b)
    study = optuna.load_study(study_name="s", storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 3, [t.state for t in study.trials]
    assert all(t.user_attrs.get("error", "").startswith("over budget") for t in study.trials if t not in done)
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2  # both contributed
    for trial in done:  # each worker keeps its own trials' run directories
        run_dir = Path(trial.user_attrs["run_dir"])
        assert run_dir.parent.name in ("a", "b") and (run_dir / "results" / "test.json").is_file()
        assert set(trial.params) == {"RETRIEVER.SOLVER.OPTIMIZER.BASE_LR", "RETRIEVER.SOLVER.TEMPERATURE",
                                     "RETRIEVER.SOLVER.ALPHA"}
    rows = list(csv.DictReader((tmp_path / "b" / "leaderboard.csv").open()))
    assert len(rows) == len(study.trials) and {r["worker"] for r in rows} == workers and [r["state"] for r in rows][:3] == ["complete"] * 3
    assert "optuna-dashboard" in out_a + out_b
    # the same study name with another space is refused, in one line
    other = write_search(tmp_path, splade_tiny, product_qa, {"METHOD": "random", "TRIALS": 4, "PRUNER": "none"},
                         space={"SOLVER.ALPHA": [0.3, 0.7]})
    refused = worker(other, tmp_path / "c", storage)
    out, _ = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "was made from another search" in out and "Traceback" not in out


def test_a_diverging_trial_is_pruned_at_its_first_report(tmp_path, splade_tiny, product_qa):
    sweep = write_search(tmp_path, splade_tiny, product_qa, {"METHOD": "random", "TRIALS": 2, "PRUNER": "median",
                                                            "STARTUP": 1},
                         space={"SOLVER.OPTIMIZER.BASE_LR": {"LOW": 1e-5, "HIGH": 100.0, "LOG": True}},
                         points=[{"SOLVER.OPTIMIZER.BASE_LR": 1e-4}, {"SOLVER.OPTIMIZER.BASE_LR": 30.0}])
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    finish(worker(sweep, tmp_path / "out", storage))
    good, wild = optuna.load_study(study_name="s", storage=storage).trials
    assert good.state.name == "COMPLETE" and wild.state.name == "PRUNED"
    assert list(wild.intermediate_values) == [2]  # stopped at its first report
    run_dir = Path(wild.user_attrs["run_dir"])
    assert (run_dir / "checkpoints" / "last" / "trainer.pt").is_file()  # its run directory and last checkpoint stay
    assert not (run_dir / "results" / "test.json").exists()
    rows = list(csv.DictReader((tmp_path / "out" / "leaderboard.csv").open()))
    assert [r["state"] for r in rows] == ["complete", "pruned"] and rows[1]["p mrr@5"] == ""
    assert (tmp_path / "out" / "plots" / "reports.png").stat().st_size > 1000


def test_a_killed_workers_trial_is_failed_and_retried(tmp_path, splade_tiny, product_qa):
    sweep = write_search(tmp_path, splade_tiny, product_qa, {"METHOD": "random", "TRIALS": 2, "PRUNER": "none"})
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = worker(sweep, tmp_path / "a", storage, "--grace=3")
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "a").glob("s-0000/metrics.jsonl")):
        time.sleep(0.5)  # until its trial is training
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    time.sleep(4)  # the heartbeat goes stale
    finish(worker(sweep, tmp_path / "b", storage, "--grace=3"))
    trials = optuna.load_study(study_name="s", storage=storage).trials
    killed = trials[0]
    assert killed.state.name == "FAIL"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retried and retried[0].state.name == "COMPLETE" and retried[0].params == killed.params
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2
