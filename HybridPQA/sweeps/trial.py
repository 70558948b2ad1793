"""One trial of a study: its parameters, its `hybridpqa train` process in <output>/<study>-NNNN/,
the validation metric reported at every evaluation, and the process stopped when the pruner says
so (after that evaluation's checkpoints/last is written, so the run directory keeps it)."""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import load_results
from HybridPQA.paper.rows import Row, commands
from HybridPQA.rundir import RunDir
from HybridPQA.sweeps.grid import COST
from HybridPQA.sweeps.process import launch
from HybridPQA.sweeps.spec import Sweep

log = logging.getLogger(__name__)
POLL_S = 0.5


class TrialFailed(Exception):
    """The trial's process failed; the message says why (its log's last line)."""


def suggest(trial, key: str, distribution):
    """The trial's value for `key` (a fixed one for enqueued points and retries)."""
    if hasattr(distribution, "choices"):
        return trial.suggest_categorical(key, distribution.choices)
    if type(distribution).__name__ == "IntDistribution":
        return trial.suggest_int(key, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    return trial.suggest_float(key, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def run_name(study, trial) -> str:
    """<study>-NNNN, NNNN the first trial of a retry series (a retry resumes the same run directory)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
    return f"{study.study_name}-{(RetryHeartbeatStaleTrialCallback.retry_history(frozen) or [trial.number])[0]:04d}"


def _val_records(path: Path, offset: int) -> tuple[list[dict], int]:
    """The val records of metrics.jsonl written since `offset` (whole lines only), and the new offset."""
    if not path.is_file():
        return [], 0
    with path.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
    whole = chunk[:chunk.rfind(b"\n") + 1]
    records = []
    for line in whole.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("split") == "val":
            records.append(record)
    return records, offset + len(whole)


def _watch(child, run_dir: RunDir, trial, key: str, last_step: int, reported: dict) -> bool:
    """Report each new val record of `child`'s run; True when the pruner stops the trial."""
    offset = 0
    while True:
        done = child.poll() is not None
        records, offset = _val_records(run_dir.metrics, offset)
        for record in records:
            step = int(record["step"])
            if key not in record or step in reported:
                continue
            reported[step] = float(record[key])
            trial.report(reported[step], step)
            if step < last_step and trial.should_prune():  # the last evaluation: let it finish
                return True
        if done:
            return False
        time.sleep(POLL_S)


def _outcome(run_dir: RunDir, scorer: str) -> dict:
    """{split: metrics of the scorer} and the cost, from results/{dev,test}.json."""
    out = {}
    for split in ("dev", "test"):
        path = run_dir.results_file(split)
        if path.is_file():
            results = load_results(path)
            out[split] = results["metrics"].get(scorer, {})
            if split == "test":
                cost = results.get("efficiency", {}).get(scorer, {})
                out["cost"] = {k: cost[k] for k in COST if k in cost}
    return out


def _tail(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.is_file() else []
    return lines[-1][:300] if lines else "no output"


def run_trial(study, trial, sweep: Sweep, output: Path, cores: set[int] | None) -> float:
    """Train the trial; -> its dev metric. Raises optuna.TrialPruned, or TrialFailed with the log's last line."""
    import optuna

    params = {key: suggest(trial, key, d) for key, d in sweep.space.items()}
    name = run_name(study, trial)
    try:
        cfg = sweep.config(params, name, f"{sweep.path}: trial {trial.number}")
    except InputError as err:
        raise TrialFailed(str(err)) from None
    (output / "configs").mkdir(parents=True, exist_ok=True)
    (output / "configs" / f"{name}.yaml").write_text(cfg.dump())
    scorer, metric = sweep.scorer_of(cfg), sweep.metrics[0]
    row, run_dir = Row(name, name, scorer, sweep.data, params, sweep.path, cfg=cfg), RunDir(output / name)
    for key, value in {"worker": f"{socket.gethostname()}:{os.getpid()}", "run_dir": str(run_dir.path.resolve()),
                       "scorer": scorer}.items():
        trial.set_user_attr(key, value)
    if run_dir.holder() is not None:
        raise TrialFailed(f"{run_dir.path} is in use by process {run_dir.holder()}")
    try:
        todo = commands(row, output, None, overwrite=False)
    except InputError as err:
        raise TrialFailed(str(err)) from None
    logs, start, reported = output / "logs", time.perf_counter(), {}
    logs.mkdir(exist_ok=True)
    last_step = cfg.RETRIEVER.SOLVER.TOTAL_TRAIN_STEPS
    for command in todo:
        log.info("trial %d (%s): %s", trial.number, name, " ".join(f"{k}={v:.4g}" if isinstance(v, float)
                                                                    else f"{k}={v}" for k, v in params.items()))
        child = launch(command, logs / f"{name}.log", cores)
        pruned = _watch(child, run_dir, trial, f"{scorer}/{metric}", last_step, reported)
        if pruned:
            child.kill()
            child.wait()
        trial.set_user_attr("steps", last_step if child.returncode == 0 else max(reported, default=0))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        if pruned:
            raise optuna.TrialPruned(f"pruned at step {max(reported)}: {metric} {reported[max(reported)]:.4f}")
        if child.returncode != 0:
            raise TrialFailed(f"exit code {child.returncode}: {_tail(logs / f'{name}.log')}")
    outcome = _outcome(run_dir, scorer)
    for key, value in outcome.items():
        trial.set_user_attr(key, value)
    value = outcome.get("dev", {}).get(metric, reported.get(max(reported, default=-1)))
    if value is None:
        raise TrialFailed(f"{run_dir.path}: no dev {metric} of {scorer} (results/dev.json, val records)")
    return float(value)
