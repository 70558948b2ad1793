"""`hybridpqa sweep`: points, names, parallel runs, resuming, the leaderboard, bad sweep files."""
import csv
from pathlib import Path

import pytest
import yaml

from HybridPQA.cli import main
from HybridPQA.errors import InputError
from HybridPQA.sweeps.grid import load_sweep, point_name

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
def test_shipped_sweeps_load(path, tmp_path):
    settings, rows = load_sweep(path, tmp_path)
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
])
def test_bad_sweep_files_name_the_problem(tmp_path, spec, message):
    sweep = write_sweep(tmp_path, Path("m"), Path("d"), **spec)
    with pytest.raises(InputError, match=message):
        load_sweep(sweep, tmp_path / "out")
