"""`hybridpqa sweep`: points, names, parallel runs, resuming, the leaderboard, bad sweep files."""
import csv
from pathlib import Path

import pytest
import yaml

from HybridPQA.cli import main
from HybridPQA.errors import InputError
from HybridPQA.sweeps.grid import load_sweep, point_name
from HybridPQA.sweeps.spec import read_sweep

REPO = Path(__file__).resolve().parents[1]


def write_sweep(tmp_path: Path, splade_tiny: Path, product_qa: Path, **spec) -> Path:
    body = {"BASE": str(REPO / "configs" / "quickstart.yaml"), "DATA": str(product_qa),
            "SET": {"RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE": str(splade_tiny), "SOLVER.TOTAL_TRAIN_STEPS": 4,
                    "SOLVER.NUM_STEP_PER_EVAL": 2, "DATA.COUNT": 24, "SOLVER.TRAIN_BATCH_SIZE": 4,
                    "SOLVER.OPTIMIZER.WARMUP_STEPS": 1, "NUM_THREADS": 1, "RETRIEVER.COMPUTE_FLOPS": False},
            "METRICS": ["mrr@5", "ndcg@5"], **spec}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_load(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # DATA is read from the current folder
    (tmp_path / "data" / "product-qa").mkdir(parents=True)
    sweep = read_sweep(path)
    if sweep.search:  # a study: every range's ends and every choice made a valid config when it was read
        assert len(sweep.space) >= 4 and sweep.metrics[0] == "mrr@5"
        return
    settings, rows = load_sweep(path, tmp_path / "out")
    assert len(rows) >= 4 and len({r.name for r in rows}) == len(rows)
    assert all(r.cfg.is_frozen() for r in rows)


def test_point_names_are_readable():
    point = {"RETRIEVER.SOLVER.LAMBDA_QUERY": 0.001, "RETRIEVER.SOLVER.ALPHA": 0.5}
    assert point_name(point, list(point)) == "lambda_query=0.001_alpha=0.5"
    clash = {"RETRIEVER.SOLVER.OPTIMIZER.NAME": "Adam", "RETRIEVER.DATA.NAME": "x y"}
    assert point_name(clash, list(clash)) == "optimizer-name=Adam_data-name=x-y"


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_sweep_runs_resumes_and_ranks(tmp_path, splade_tiny, product_qa, capsys):
    sweep = write_sweep(tmp_path, splade_tiny, product_qa, GRID={"SOLVER.LAMBDA_QUERY": [0.0, 0.01]},
                        POINTS=[["SOLVER.ALPHA", 0.8]])
    out = tmp_path / "out"
    main(["sweep", f"--config={sweep}", f"--output={out}", "--dry-run"])
    listed = capsys.readouterr().out
    assert listed.count("would run") == 3 and "lambda_query=0.01" in listed and "alpha=0.8" in listed
    report = main(["sweep", f"--config={sweep}", f"--output={out}", "--jobs=2"])
    assert len(report["finished"]) == 3 and not report["failures"]
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert {"point", "lambda_query", "alpha", "dev mrr@5", "test mrr@5", "p mrr@5", "gflops_per_query"} <= set(rows[0])
    dev = [float(r["dev mrr@5"]) for r in rows]
    assert dev == sorted(dev, reverse=True) and rows[0]["p mrr@5"] == "" and rows[1]["p mrr@5"] != ""
    assert "paired t-test" in (out / "leaderboard.md").read_text()
    first = (out / rows[0]["point"] / "results" / "test.json").stat().st_mtime
    # a point that crashed after training (no test results) resumes; one that crashed at once reruns
    (out / "lambda_query=0.01" / "results" / "test.json").unlink()
    crashed = out / "alpha=0.8"
    for child in ("checkpoints", "results", "metrics.jsonl"):
        path = crashed / child
        __import__("shutil").rmtree(path) if path.is_dir() else path.unlink()
    main(["sweep", f"--config={sweep}", f"--output={out}", "--dry-run"])
    listed = capsys.readouterr().out
    assert "finished, reused" in listed and "interrupted, would resume" in listed and "would run" in listed
    report = main(["sweep", f"--config={sweep}", f"--output={out}", "--jobs=2"])
    assert len(report["finished"]) == 3
    assert (out / rows[0]["point"] / "results" / "test.json").stat().st_mtime == first  # finished: skipped
    assert "resumed at step 4" in (out / "lambda_query=0.01" / "log.txt").read_text()


@pytest.mark.parametrize("spec, message", [
    ({"GRID": {"SOLVER.NO_SUCH_KEY": [1, 2]}}, "unknown config key SOLVER.NO_SUCH_KEY"),
    ({"GRID": {"SOLVER.ALPHA": 0.5}}, "GRID maps each key to a non-empty list"),
    ({"GRID": {"SOLVER.ALPHA": [2.0]}}, r"point 1 \(alpha=2\): config: RETRIEVER.SOLVER.ALPHA = 2.0 must lie"),
    ({"POINTS": [["SOLVER.ALPHA"]]}, r"POINTS\[0\]: a point is a mapping"),
    ({"POINTS": [{"SOLVER.ALPHA": 0.5}, {"ALPHA": 0.5}]}, "two points share the name alpha=0.5"),
    ({"GRIDS": {}}, "unknown sweep key"),
    ({}, "no points"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2}}, "SEARCH needs a SPACE"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2, "PRUNE": "median"}, "SPACE": {"ALPHA": [0.2]}}, "unknown SEARCH key"),
    ({"SEARCH": {"METHOD": "cmaes", "TRIALS": 2}, "SPACE": {"ALPHA": [0.2]}}, "SEARCH.METHOD 'cmaes'"),
    ({"SEARCH": {"METHOD": "tpe"}, "SPACE": {"ALPHA": [0.2]}}, "SEARCH.TRIALS is missing"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 0}, "SPACE": {"ALPHA": [0.2]}}, "TRIALS = 0 must be a positive"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2}, "SPACE": {"ALPHA": {"LOW": 0.5, "HIGH": 0.5}}}, "SPACE.ALPHA: the range is empty"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2}, "SPACE": {"BASE_LR": {"LOW": 0.0, "HIGH": 1e-3, "LOG": True}}},
     "SPACE.BASE_LR: a LOG range must lie above 0"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2}, "SPACE": {"ALPHA": {"LOW": 0.1, "HIGH": 0.9, "STEPS": 2}}},
     r"SPACE.ALPHA: unknown key\(s\) STEPS"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2}, "SPACE": {"ALPHA": {"LOW": 0.1, "HIGH": 2.0}}},
     r"SPACE.RETRIEVER.SOLVER.ALPHA = 2.0: config: RETRIEVER.SOLVER.ALPHA = 2.0 must lie"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2}, "SPACE": {"SOLVER.NO_SUCH": [1, 2]}}, "unknown config key SOLVER.NO_SUCH"),
    ({"SEARCH": {"METHOD": "grid"}, "SPACE": {"ALPHA": {"LOW": 0.1, "HIGH": 0.9}}}, "METHOD grid needs choices"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2}, "SPACE": {"ALPHA": []}}, "SPACE.ALPHA lists choices"),
    ({"SPACE": {"ALPHA": [0.2]}}, "SPACE needs a SEARCH"),
    ({"SEARCH": {"METHOD": "tpe", "TRIALS": 2}, "SPACE": {"ALPHA": [0.2]}, "GRID": {"ALPHA": [0.3]}},
     "GRID is a grid run of its own"),
])
def test_bad_sweep_files_name_the_problem(tmp_path, spec, message):
    sweep = write_sweep(tmp_path, Path("m"), tmp_path, **spec)
    with pytest.raises(InputError, match=message):
        read_sweep(sweep) if "SEARCH" in spec or "SPACE" in spec else load_sweep(sweep, tmp_path / "out")
