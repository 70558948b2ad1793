"""`hybridpqa sweep --config=FILE --output=DIR [--jobs=N]`: train one run per point of a
hyper-parameter grid, resumably, and rank them in a leaderboard.

A sweep file (configs/sweeps/*.yaml):

    BASE: ../quickstart.yaml        # the experiment every point starts from (relative to this file)
    DATA: data/product-qa           # --data of every point
    SET: {SOLVER.TOTAL_TRAIN_STEPS: 300}   # overrides shared by every point (optional)
    GRID:                           # every combination of these values (optional)
      SOLVER.ALPHA: [0.2, 0.5, 0.8]
    POINTS:                         # and/or explicit points: {KEY: VALUE} or [KEY, VALUE, ...] (optional)
      - {SOLVER.LAMBDA_QUERY: 0.0, SOLVER.LAMBDA_CONTEXT: 0.0}
    SCORER: hybrid                  # whose metrics rank the points (default: the model's first scorer)
    METRICS: [mrr@5, ndcg@5, map]   # the first one ranks (on dev when the runs have it, else test)

With `--jobs=N`, the cores this process may use are split evenly between the N points running
at once (each point's process is pinned to its share, and NUM_THREADS 0 uses exactly that share).
Keys are config keys or unique suffixes of them, as on the command line. Every point is a run
directory <path_output>/<name>/, its name built from the point's values (`lambda_query=0.001`).
Rerunning the command skips finished points, resumes interrupted ones from checkpoints/last and
reruns crashed ones; then it writes leaderboard.{csv,md}: every point's dev and test metrics, its
cost, and a paired t-test (ranx, Bonferroni-corrected) of its test run against the best point's.
"""
from __future__ import annotations

import csv
import itertools
import logging
import os
import queue
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml

from HybridPQA.config import get_cfg_defaults, get_key, load_config, read_yaml, resolve_key
from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import load_results
from HybridPQA.evaluation.metrics import RETRIEVE_METRICS
from HybridPQA.paper.report import significance
from HybridPQA.paper.rows import Row, commands
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import progress

log = logging.getLogger(__name__)
SWEEP_KEYS = {"BASE", "DATA", "SET", "GRID", "POINTS", "SCORER", "METRICS"}
COST = ("gflops_per_query", "avg_active_dims_query", "avg_active_dims_document", "expected_flops_per_pair",
        "latency_ms_p50")


def _pairs(entry, where: str) -> dict:
    """A point as {KEY: VALUE}, from a mapping or a flat [KEY, VALUE, ...] list."""
    if isinstance(entry, dict):
        return dict(entry)
    if isinstance(entry, list) and len(entry) % 2 == 0 and all(isinstance(k, str) for k in entry[::2]):
        return dict(zip(entry[::2], entry[1::2]))
    raise InputError(f"{where}: a point is a mapping {{KEY: VALUE}} or a list [KEY, VALUE, ...], got {entry!r}")


def _fmt(value) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return "".join(c if c.isalnum() or c in ".-+" else "-" for c in text)


def short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each key, lowercased; with the section too where two keys share it."""
    short = {k: k.split(".")[-1].lower() for k in keys}
    if len(set(short.values())) < len(short):
        short = {k: "-".join(k.split(".")[-2:]).lower() for k in keys}
    return short


def point_name(point: dict[str, object], keys: list[str]) -> str:
    """`lambda_query=0.001_alpha=0.5`: each swept key's short name with the point's value."""
    short = short_names(keys)
    return "_".join(f"{short[k]}={_fmt(point[k])}" for k in keys if k in point)


def load_sweep(path: str | Path, output: Path) -> tuple[dict, list[Row]]:
    """(settings, one Row per point), every point's config merged, validated and written to
    <output>/configs/<name>.yaml."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--config={path}: no such file; give a sweep YAML (see configs/sweeps/)")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"{path}: invalid YAML ({getattr(err, 'problem', err)}); fix the syntax") from None
    if not isinstance(spec, dict) or "BASE" not in spec or "DATA" not in spec:
        raise InputError(f"{path}: a sweep file is a mapping with at least BASE (experiment YAML) and DATA")
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise InputError(f"{path}: unknown sweep key(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(SWEEP_KEYS))}")
    grid = spec.get("GRID") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise InputError(f"{path}: GRID maps each key to a non-empty list of values, got {grid!r}")
    if not isinstance(spec.get("POINTS") or [], list):
        raise InputError(f"{path}: POINTS is a list of points, got {spec['POINTS']!r}")
    defaults = get_cfg_defaults()

    def full(point: dict, where: str) -> dict:  # suffixes like SOLVER.ALPHA become full keys
        return {resolve_key(defaults, str(k), where): v for k, v in point.items()}

    shared = full(_pairs(spec.get("SET") or {}, f"{path}: SET"), f"{path}: SET")
    points = [full(dict(zip(grid, values)), f"{path}: GRID") for values in itertools.product(*grid.values())] if grid else []
    points += [full(_pairs(p, f"{path}: POINTS[{i}]"), f"{path}: POINTS[{i}]")
               for i, p in enumerate(spec.get("POINTS") or [])]
    if not points:
        raise InputError(f"{path}: no points; give a GRID, POINTS, or both")
    base = path.parent / spec["BASE"]
    read_yaml(base)  # a missing or broken base fails here, naming the file
    keys = list(dict.fromkeys(k for p in points for k in p))
    names = [point_name(p, keys) for p in points]
    rows, output = [], Path(output)
    (output / "configs").mkdir(parents=True, exist_ok=True)
    for i, (point, name) in enumerate(zip(points, names)):
        where = f"{path}: point {i + 1} ({name})"
        overrides = [str(x) for k, v in {**shared, **point, "EXP": name}.items() for x in (k, v)]
        try:
            cfg = load_config(base, overrides, dotenv_path=".env")
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
        if any(r.name == name for r in rows):
            raise InputError(f"{where}: two points share the name {name}; make them differ in a swept key")
        config_file = output / "configs" / f"{name}.yaml"
        config_file.write_text(cfg.dump())
        scorer = spec.get("SCORER") or {"hybrid": "hybrid"}.get(cfg.RETRIEVER.MODEL.BIENCODER_TYPE,
                                                                 cfg.RETRIEVER.MODEL.BIENCODER_TYPE)
        rows.append(Row(name, name, scorer, Path(spec["DATA"]), point, path, cfg=cfg))
    metrics = spec.get("METRICS") or [rows[0].cfg.RETRIEVER.SOLVER.SELECT_METRIC]
    if not isinstance(metrics, list) or any(m not in RETRIEVE_METRICS for m in metrics):
        raise InputError(f"{path}: METRICS = {metrics!r}; each must be one of the metrics runs report: "
                         f"{', '.join(RETRIEVE_METRICS)}")
    settings = {"METRICS": list(metrics), "KEYS": keys}
    return settings, rows


def core_shares(jobs: int) -> list[set[int]]:
    """The process's cores split into `jobs` near-equal sets (sets are shared when cores are fewer)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning
        return [set()] * jobs
    if jobs >= len(cores):
        return [{cores[i % len(cores)]} for i in range(jobs)]
    return [set(cores[i * len(cores) // jobs:(i + 1) * len(cores) // jobs]) for i in range(jobs)]


def _run_point(row: Row, output: Path, overwrite: bool, cores: set[int] | None = None) -> str | None:
    """Run what the point still needs, pinned to `cores`; None when it finished, else a one-line failure."""
    holder = RunDir(output / row.name).holder()
    if holder is not None:
        return f"point {row.name} skipped: {output / row.name} is in use by process {holder}"
    try:
        todo = commands(row, output, None, overwrite)  # finished points with the same config: nothing
    except InputError as err:
        return f"point {row.name}: {err}"
    logs = output / "logs"
    logs.mkdir(exist_ok=True)
    for command in todo:
        log.info("point %s: %s", row.name, " ".join(command[1:]))
        with (logs / f"{row.name}.log").open("a") as handle:
            child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
            if cores:  # before the child has imported torch, so its threads inherit the set
                try:
                    os.sched_setaffinity(child.pid, cores)
                except OSError:
                    pass  # it exited already
            returncode = child.wait()
        if returncode != 0:
            return f"point {row.name} failed with exit code {returncode}; see {logs / (row.name + '.log')}"
    return None


def _status(row: Row, output: Path, overwrite: bool) -> str:
    try:
        todo = commands(row, output, None, overwrite)
    except InputError as err:
        return str(err)
    if not todo:
        return "finished, reused"
    return ("interrupted, would resume" if "--resume" in todo[0] else "would run") + ": " + " ".join(todo[0][1:])


def _results(row: Row, output: Path, split: str) -> dict:
    path = RunDir(output / row.name).results_file(split)
    if not path.is_file():
        return {}
    results = load_results(path)
    if row.scorer not in results["metrics"]:
        raise InputError(f"SCORER {row.scorer!r} is not among {path}'s scorers ({', '.join(results['metrics'])})")
    return {**results["metrics"][row.scorer], **results.get("efficiency", {}).get(row.scorer, {})}


def leaderboard(rows: list[Row], settings: dict, output: Path) -> str:
    """leaderboard.csv and leaderboard.md, best point first; returns the Markdown."""
    metrics, keys = settings["METRICS"], settings["KEYS"]
    dev = {r.name: _results(r, output, "dev") for r in rows}
    test = {r.name: _results(r, output, "test") for r in rows}
    split = "dev" if all(dev.values()) else "test"
    chooser = dev if split == "dev" else test
    ranked = sorted(rows, key=lambda r: -chooser[r.name].get(metrics[0], float("-inf")))
    best = ranked[0]
    sig = significance(ranked, output, best.name, metrics) if len(rows) > 1 else {}
    header = ["rank", "point", *short_names(keys).values(), f"{split} {metrics[0]}", *[f"test {m}" for m in metrics],
              *[f"p {m}" for m in metrics], *COST]
    body = []
    for i, row in enumerate(ranked, 1):
        cells = [str(i), row.name, *[_value(get_key(row.cfg, k)) for k in keys],
                 _value(chooser[row.name].get(metrics[0]))]
        for m in metrics:
            mark = "†" if sig.get(row.name, {}).get(m, {}).get("significant") else ""
            cells.append(_value(test[row.name].get(m)) + mark)
        cells += [_value(sig.get(row.name, {}).get(m, {}).get("p")) for m in metrics]
        cells += [_value(test[row.name].get(k)) for k in COST]
        body.append(cells)
    with (output / "leaderboard.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[c.rstrip("†") for c in cells] for cells in body])
    note = (f"Ranked by {split} {metrics[0]} of the {best.scorer} scorer. p: paired t-test of each point's test run "
            f"against the best point's (ranx), Bonferroni over {len(rows) - 1} comparisons; † p < 0.05.")
    md = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                    *["| " + " | ".join(cells) + " |" for cells in body], "", note])
    (output / "leaderboard.md").write_text(md + "\n")
    return md


def _value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 100 else f"{value:.4f}"
    return str(value)


def sweep(path_cfg: str | Path, path_output: str | Path, jobs: int = 1, dry_run: bool = False,
          overwrite: bool = False) -> dict:
    """Run (or reuse) every point, `jobs` at a time, then write the leaderboard."""
    output = Path(path_output)
    settings, rows = load_sweep(path_cfg, output)
    if dry_run:
        for row in rows:
            print(f"{row.name}\n    {_status(row, output, overwrite)}")
        return {"points": [r.name for r in rows]}
    shares: queue.Queue = queue.Queue()
    for share in core_shares(jobs) if jobs > 1 else [None]:
        shares.put(share)
    if jobs > 1:
        log.info("--jobs=%d: each point runs on its own share of the cores: %s", jobs,
                 " | ".join(",".join(map(str, sorted(s))) for s in list(shares.queue)))

    def run_one(row: Row) -> str | None:
        share = shares.get()
        try:
            return _run_point(row, output, overwrite, share)
        finally:
            shares.put(share)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, r) for r in rows]
        failures = [f.result() for f in progress(as_completed(futures), total=len(futures), desc="sweep", unit="point")]
        failures = [f for f in failures if f]
    finished = [r for r in rows if RunDir(output / r.name).finished("test")]
    if len(finished) < len(rows) and not failures:
        failures = [f"point {r.name} has no results/test.json" for r in rows if r not in finished]
    if not finished:
        raise InputError("no point finished: " + "; ".join(failures))
    markdown = leaderboard(finished, settings, output)
    print(markdown)
    print(f"\nwrote {output / 'leaderboard.md'} and {output / 'leaderboard.csv'}")
    for failure in failures:
        print(f"FAIL {failure}")
    return {"points": [r.name for r in rows], "finished": [r.name for r in finished], "failures": failures}
