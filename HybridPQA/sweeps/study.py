"""A search (SEARCH + SPACE) as an Optuna study that any number of workers join.

Every `hybridpqa sweep` process that names the same storage and study is a worker of it, on this
machine or another. A worker asks the study for a trial, trains it as its own `hybridpqa train`
process in <output>/trial-NNNN/ (pinned to its share of the cores, as a grid point is), reports
the validation metric at every evaluation, and stops the process when the pruner says so (its
checkpoints/last is kept). The storage is any Optuna storage:

- the default, `sqlite:///<output>/study.db`: a file, no server;
- an RDB URL (`postgresql://user@host/db`, `mysql+pymysql://...`) for workers on several machines;
- a journal: `journal:PATH` (a file every worker can append to) or `redis://host:port`.

With an RDB storage every running trial has a heartbeat; a worker killed outright leaves its trial
to be failed when the heartbeat is `--grace` seconds old, and retried (same parameters) by the next
worker that looks. Rerunning the command resumes the study until TRIALS trials are complete or pruned.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.sweeps.spec import Sweep
from HybridPQA.sweeps.trial import TrialFailed, run_trial

log = logging.getLogger(__name__)
FINISHED = ("COMPLETE", "PRUNED")
RETRIES = 3  # a trial whose worker died is retried this many times
CONSECUTIVE_FAILURES = 3  # a worker stops after this many failed trials in a row


def shown(url: str) -> str:
    """The storage URL with its password masked, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    user, at, host = rest.rpartition("@")
    if sep and at and ":" in user:
        return f"{scheme}://{user.split(':', 1)[0]}:***@{host}"
    return url


def open_storage(url: str | None, output: Path, grace: int):
    """The Optuna storage `url` names (default: the SQLite file in `output`); heartbeats on RDB storages."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    url = url or f"sqlite:///{(output / 'study.db').resolve()}"
    try:
        if url.startswith("journal:"):
            path = Path(url[len("journal:"):]).expanduser()
            if not path.parent.is_dir():
                raise InputError(f"--storage={url}: folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("redis://"):
            from optuna.storages.journal import JournalRedisBackend

            return JournalStorage(JournalRedisBackend(url))
        if "://" not in url:
            raise InputError(f"--storage={url}: give a database URL (sqlite:///FILE, postgresql://USER@HOST/DB), "
                             "journal:FILE or redis://HOST:PORT")
        return _rdb(RDBStorage, url, grace, RetryHeartbeatStaleTrialCallback(max_retry=RETRIES))
    except InputError:
        raise
    except (ImportError, ModuleNotFoundError) as err:
        raise InputError(f"--storage={shown(url)}: its driver is not installed ({err}); install it "
                         "(PostgreSQL: pip install 'psycopg[binary]')") from None
    except Exception as err:  # noqa: BLE001 - sqlalchemy's and redis' connection errors
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise InputError(f"--storage={shown(url)}: cannot open it ({reason})") from None
    finally:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def _rdb(RDBStorage, url: str, grace: int, retry, tries: int = 5):
    """An RDB storage; workers starting at once on a new database race to create Optuna's tables
    (the loser sees a unique-key violation), so a failed first open is retried after the winner's."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(tries):
        try:
            return RDBStorage(url, heartbeat_interval=max(1, grace // 4), grace_period=grace,
                              heartbeat_stale_trial_callback=retry)
        except (IntegrityError, OperationalError, ProgrammingError) as err:
            raced = isinstance(err, IntegrityError) or "already exists" in str(err)
            if not raced or attempt == tries - 1:
                raise
            time.sleep(1 + attempt)


def _sampler(sweep: Sweep, seed: int):
    import optuna

    method, startup = sweep.search["METHOD"], sweep.search["STARTUP"]
    if method == "grid":
        return optuna.samplers.GridSampler({k: list(d.choices) for k, d in sweep.space.items()}, seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def _pruner(sweep: Sweep):
    """The pruner; its resource is the training step each report is made at."""
    import optuna

    pruner, startup = sweep.search["PRUNER"], sweep.search["STARTUP"]
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
    if pruner == "hyperband":
        first = sweep.config({}, "check", str(sweep.path)).RETRIEVER.SOLVER.NUM_STEP_PER_EVAL
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource="auto", reduction_factor=3)
    return optuna.pruners.NopPruner()


def budget(sweep: Sweep) -> int:
    """TRIALS, or the grid's size where it is smaller (or TRIALS is not given)."""
    size = 1
    for distribution in sweep.space.values():
        size *= len(getattr(distribution, "choices", ())) or 1
    if sweep.search["METHOD"] == "grid":
        return min(sweep.search.get("TRIALS") or size, size)
    return sweep.search["TRIALS"]


def open_study(sweep: Sweep, storage, name: str, url: str):
    """Create the study, or join it: refused in one line when it was made from another search."""
    import optuna

    known = {s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)}
    created = name not in known
    seed = sweep.search["SEED"] if created else sweep.search["SEED"] + 1 + (hash((socket.gethostname(), os.getpid())) % 2 ** 30)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=_sampler(sweep, seed), pruner=_pruner(sweep))
    mark = study.user_attrs.get("hybridpqa")
    if mark is None:
        study.set_metric_names([f"dev {sweep.metrics[0]}"])
        study.set_user_attr("hybridpqa", {"fingerprint": sweep.fingerprint(), "sweep": str(sweep.path),
                                          "metric": sweep.metrics[0], "budget": budget(sweep),
                                          "space": {k: repr(v) for k, v in sweep.space.items()}})
        for point in sweep.points:  # POINTS are tried first
            study.enqueue_trial({k: v for k, v in point.items() if k in sweep.space}, skip_if_exists=True)
    elif mark.get("fingerprint") != sweep.fingerprint():
        raise InputError(f"--study={name} in {shown(url)} was made from another search ({mark.get('sweep')}: its SPACE, "
                         "SEARCH, SET or METRICS differ); give this search its own --study name")
    log.info("study %s in %s: %s (sampler seed %d)", name, shown(url), "created" if created else "joined", seed)
    return study


def counts(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state.name] = out.get(trial.state.name, 0) + 1
    return out


class Heartbeat:
    """The trial's heartbeat in an RDB storage, every interval, until stopped (as Study.optimize keeps it)."""

    def __init__(self, study, trial):
        storage, self.stop_event = study._storage, threading.Event()
        interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.thread = None
        if interval:
            def beat():
                while True:
                    storage.record_heartbeat(trial._trial_id)
                    if self.stop_event.wait(interval):
                        return
            self.thread = threading.Thread(target=beat, daemon=True)
            self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join()


def _budget_taken(study, trial, total: int) -> bool:
    """Whether other workers took the last trial between this worker's look and its ask."""
    ahead = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and t.state.name != "FAIL"]
    return len(ahead) >= total


def _run(study, trial, sweep: Sweep, output: Path, cores: set[int] | None) -> bool:
    """Run one asked trial and tell the study how it ended; -> whether it failed."""
    import optuna

    heartbeat = Heartbeat(study, trial)
    try:
        if _budget_taken(study, trial, budget(sweep)):
            trial.set_user_attr("error", "over budget: other workers took the last trial")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return False
        value = run_trial(study, trial, sweep, output, cores)
        study.tell(trial, value)
        return False
    except optuna.TrialPruned as why:
        log.info("trial %d %s", trial.number, why)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return False
    except TrialFailed as err:
        trial.set_user_attr("error", str(err)[:500])
        log.warning("trial %d failed: %s", trial.number, err)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return True
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    finally:
        heartbeat.stop()


def work(study, sweep: Sweep, output: Path, cores: set[int] | None, lock: threading.Lock) -> int:
    """One worker thread: trials until the study's budget is complete or pruned; -> trials it ran."""
    import optuna

    total, ran, failures = budget(sweep), 0, 0
    while True:
        with lock:
            optuna.storages.fail_stale_trials(study)  # a dead worker's trials: failed, then retried (WAITING)
            state = counts(study)
            if sum(state.get(s, 0) for s in FINISHED) >= total:
                return ran
            busy = state.get("RUNNING", 0) + sum(state.get(s, 0) for s in FINISHED)
            trial = study.ask() if busy < total or state.get("WAITING", 0) else None
        if trial is None:  # the rest is running elsewhere: see whether it ends or dies
            time.sleep(5)
            continue
        failures = failures + 1 if _run(study, trial, sweep, output, cores) else 0
        ran += 1
        if failures >= CONSECUTIVE_FAILURES:
            raise InputError(f"{CONSECUTIVE_FAILURES} trials in a row failed; see {output / 'logs'} (the last "
                             "lines of each trial's log say why)")
