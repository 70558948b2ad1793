"""A grid run (GRID and/or POINTS, no SEARCH): every point trained to the end, resumably, `--jobs`
at a time, and ranked in a leaderboard.

With `--jobs=N`, the cores this process may use are split evenly between the N points running
at once (each point's process is pinned to its share, and NUM_THREADS 0 uses exactly that share).
Every point is a run directory <path_output>/<name>/, its name built from the point's values
(`lambda_query=0.001`). Rerunning the command skips finished points, resumes interrupted ones from
checkpoints/last and reruns crashed ones; then it writes leaderboard.{csv,md}: every point's dev and
test metrics, its cost, and a paired t-test of its test run against the best point's.
"""
from __future__ import annotations

import csv
import logging
import queue
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from HybridPQA.config import get_key
from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import load_results
from HybridPQA.paper.report import significance
from HybridPQA.paper.rows import Row, commands
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import progress
from HybridPQA.sweeps.process import core_shares, launch
from HybridPQA.sweeps.spec import read_sweep

log = logging.getLogger(__name__)
COST = ("gflops_per_query", "avg_active_dims_query", "avg_active_dims_document", "expected_flops_per_pair",
        "latency_ms_p50")


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
    sweep = read_sweep(path)
    if sweep.search:
        raise InputError(f"{path}: a SEARCH runs as a study (hybridpqa sweep runs it; this is the grid runner)")
    keys = list(dict.fromkeys(k for p in sweep.points for k in p))
    rows, output = [], Path(output)
    (output / "configs").mkdir(parents=True, exist_ok=True)
    for i, point in enumerate(sweep.points):
        name = point_name(point, keys)
        cfg = sweep.config(point, name, f"{path}: point {i + 1} ({name})")
        if any(r.name == name for r in rows):
            raise InputError(f"{path}: point {i + 1} ({name}): two points share the name {name}; make them differ "
                             "in a swept key")
        (output / "configs" / f"{name}.yaml").write_text(cfg.dump())
        rows.append(Row(name, name, sweep.scorer_of(cfg), sweep.data, point, sweep.path, cfg=cfg))
    return {"METRICS": sweep.metrics, "KEYS": keys}, rows


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
        returncode = launch(command, logs / f"{row.name}.log", cores).wait()
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


def run_grid(path_cfg: str | Path, path_output: str | Path, jobs: int = 1, dry_run: bool = False,
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
