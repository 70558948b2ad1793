"""A sweep file: the base experiment, what every point shares, and the points or the search space.

    BASE: ../quickstart.yaml        # the experiment every point starts from (relative to this file)
    DATA: data/product-qa           # --data of every point
    SET: {SOLVER.TOTAL_TRAIN_STEPS: 300}   # overrides shared by every point (optional)
    GRID: {SOLVER.ALPHA: [0.2, 0.5]}       # every combination (a grid run, no study)
    POINTS: [{SOLVER.ALPHA: 0.8}]          # explicit points; with SEARCH: tried first
    SEARCH: {METHOD: tpe, TRIALS: 24, SEED: 0, PRUNER: median, STARTUP: 4}
    SPACE:
      SOLVER.OPTIMIZER.BASE_LR: {LOW: 1.0e-5, HIGH: 1.0e-3, LOG: True}   # a float range
      SOLVER.TRAIN_BATCH_SIZE: {LOW: 4, HIGH: 16, INT: True}           # an int range (STEP optional)
      SOLVER.ALPHA: [0.3, 0.5, 0.7]                                    # choices
    SCORER: hybrid                  # whose metrics rank the points (default: the model's first scorer)
    METRICS: [mrr@5, ndcg@5, map]   # the first one ranks (dev) and is what a search maximises

Keys are config keys or unique suffixes of them, as on the command line.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yacs.config import CfgNode

from HybridPQA.config import get_cfg_defaults, load_config, read_yaml, resolve_key
from HybridPQA.errors import InputError
from HybridPQA.evaluation.metrics import RETRIEVE_METRICS

SWEEP_KEYS = ("BASE", "DATA", "SET", "GRID", "POINTS", "SEARCH", "SPACE", "SCORER", "METRICS")
SEARCH_KEYS = ("METHOD", "TRIALS", "SEED", "PRUNER", "STARTUP")
METHODS = ("grid", "random", "tpe")
PRUNERS = ("median", "hyperband", "none")
RANGE_KEYS = ("LOW", "HIGH", "LOG", "INT", "STEP")
SEARCH_DEFAULTS = {"METHOD": "tpe", "SEED": 0, "PRUNER": "median", "STARTUP": 4}


@dataclass
class Sweep:
    path: Path
    base: Path
    data: Path
    shared: dict  # SET, full keys
    points: list[dict]  # GRID's combinations and POINTS, full keys
    scorer: str | None
    metrics: list[str]
    search: dict = field(default_factory=dict)  # SEARCH with its defaults; empty: a grid run
    space: dict = field(default_factory=dict)  # {full key: optuna distribution}

    def config(self, point: dict, name: str, where: str) -> CfgNode:
        """The point's merged, validated config (EXP is its name)."""
        overrides = [str(x) for k, v in {**self.shared, **point, "EXP": name}.items() for x in (k, v)]
        try:
            return load_config(self.base, overrides, dotenv_path=".env")
        except InputError as err:
            raise InputError(f"{where}: {err}") from None

    def scorer_of(self, cfg: CfgNode) -> str:
        kind = cfg.RETRIEVER.MODEL.BIENCODER_TYPE
        return self.scorer or {"hybrid": "hybrid"}.get(kind, kind)

    def fingerprint(self) -> str:
        """What makes two workers' trials comparable: the space, the search (not its budget), SET, the metrics."""
        space = {k: repr(v) for k, v in sorted(self.space.items())}
        search = {k: v for k, v in self.search.items() if k != "TRIALS"}  # a budget may grow
        body = json.dumps([space, search, sorted(self.shared.items(), key=str), self.metrics, self.scorer],
                          sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _pairs(entry, where: str) -> dict:
    """A point as {KEY: VALUE}, from a mapping or a flat [KEY, VALUE, ...] list."""
    if isinstance(entry, dict):
        return dict(entry)
    if isinstance(entry, list) and len(entry) % 2 == 0 and all(isinstance(k, str) for k in entry[::2]):
        return dict(zip(entry[::2], entry[1::2]))
    raise InputError(f"{where}: a point is a mapping {{KEY: VALUE}} or a list [KEY, VALUE, ...], got {entry!r}")


def _read(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"--config={path}: no such file; give a sweep YAML (see configs/sweeps/)")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"{path}: invalid YAML ({getattr(err, 'problem', err)}); fix the syntax") from None
    if not isinstance(spec, dict) or "BASE" not in spec or "DATA" not in spec:
        raise InputError(f"{path}: a sweep file is a mapping with at least BASE (experiment YAML) and DATA")
    unknown = set(spec) - set(SWEEP_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown sweep key(s) {', '.join(sorted(unknown))}; use {', '.join(SWEEP_KEYS)}")
    return spec


def _search(spec: dict, path: Path) -> dict:
    given = spec.get("SEARCH")
    if given is None:
        if spec.get("SPACE"):
            raise InputError(f"{path}: SPACE needs a SEARCH ({{METHOD: tpe, TRIALS: N}}) to search it")
        return {}
    if not isinstance(given, dict):
        raise InputError(f"{path}: SEARCH is a mapping like {{METHOD: tpe, TRIALS: 24}}, got {given!r}")
    unknown = set(given) - set(SEARCH_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown SEARCH key(s) {', '.join(sorted(unknown))}; use {', '.join(SEARCH_KEYS)}")
    search = {**SEARCH_DEFAULTS, **given}
    if search["METHOD"] not in METHODS:
        raise InputError(f"{path}: SEARCH.METHOD {search['METHOD']!r}; use one of {', '.join(METHODS)}")
    if search["PRUNER"] not in PRUNERS:
        raise InputError(f"{path}: SEARCH.PRUNER {search['PRUNER']!r}; use one of {', '.join(PRUNERS)}")
    for key in ("TRIALS", "SEED", "STARTUP"):
        value = search.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < (key == "TRIALS")):
            raise InputError(f"{path}: SEARCH.{key} = {value!r} must be a {'positive' if key == 'TRIALS' else 'non-negative'} integer")
    if spec.get("GRID"):
        raise InputError(f"{path}: GRID is a grid run of its own; with SEARCH, list the values in SPACE (METHOD grid)")
    if search.get("TRIALS") is None and search["METHOD"] != "grid":
        raise InputError(f"{path}: SEARCH.TRIALS is missing; how many trials may METHOD {search['METHOD']} run?")
    return search


def _distribution(key: str, given, where: str):
    """An optuna distribution from a range {LOW, HIGH, LOG, INT, STEP} or a list of choices."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(given, list):
        if not given or not all(v is None or isinstance(v, (bool, int, float, str)) for v in given):
            raise InputError(f"{where}: SPACE.{key} lists choices: a non-empty list of numbers or strings, got {given!r}")
        if len(set(map(repr, given))) < len(given):
            raise InputError(f"{where}: SPACE.{key} lists a choice twice: {given!r}")
        return CategoricalDistribution(given)
    if not isinstance(given, dict) or not {"LOW", "HIGH"} <= set(given):
        raise InputError(f"{where}: SPACE.{key} is a range {{LOW, HIGH}} (LOG, INT, STEP optional) or a list of "
                         f"choices, got {given!r}")
    unknown = set(given) - set(RANGE_KEYS)
    if unknown:
        raise InputError(f"{where}: SPACE.{key}: unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(RANGE_KEYS)}")
    low, high, log, step = given["LOW"], given["HIGH"], bool(given.get("LOG")), given.get("STEP")
    numbers = [v for v in (low, high, step) if v is not None]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise InputError(f"{where}: SPACE.{key}: LOW, HIGH and STEP must be numbers, got {given!r}")
    if not low < high:
        raise InputError(f"{where}: SPACE.{key}: the range is empty (LOW {low} must be below HIGH {high})")
    if log and low <= 0:
        raise InputError(f"{where}: SPACE.{key}: a LOG range must lie above 0 (LOW is {low})")
    if log and step is not None:
        raise InputError(f"{where}: SPACE.{key}: a LOG range takes no STEP")
    if given.get("INT"):
        if not all(float(v).is_integer() for v in numbers):
            raise InputError(f"{where}: SPACE.{key}: an INT range needs whole LOW, HIGH and STEP, got {given!r}")
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def _extremes(distribution) -> list:
    return list(distribution.choices) if hasattr(distribution, "choices") else [distribution.low, distribution.high]


def read_sweep(path: str | Path, trials: int | None = None) -> Sweep:
    """The sweep file, checked: keys, points, space (every range's ends and every choice make a valid
    config), metrics. Errors name the file and the key."""
    path = Path(path)
    spec = _read(path)
    if trials is not None:
        if not isinstance(spec.get("SEARCH"), dict):
            raise InputError(f"--trials={trials}: {path} has no SEARCH; --trials sets a search's budget")
        spec["SEARCH"] = {**spec["SEARCH"], "TRIALS": trials}
    search = _search(spec, path)
    grid = spec.get("GRID") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise InputError(f"{path}: GRID maps each key to a non-empty list of values, got {grid!r}")
    if not isinstance(spec.get("POINTS") or [], list):
        raise InputError(f"{path}: POINTS is a list of points, got {spec['POINTS']!r}")
    space_given = spec.get("SPACE") or {}
    if search and (not isinstance(space_given, dict) or not space_given):
        raise InputError(f"{path}: SEARCH needs a SPACE: {{KEY: {{LOW, HIGH}} or [choices]}}")
    defaults = get_cfg_defaults()

    def full(point: dict, where: str) -> dict:  # suffixes like SOLVER.ALPHA become full keys
        return {resolve_key(defaults, str(k), where): v for k, v in point.items()}

    import itertools

    shared = full(_pairs(spec.get("SET") or {}, f"{path}: SET"), f"{path}: SET")
    points = [full(dict(zip(grid, values)), f"{path}: GRID") for values in itertools.product(*grid.values())] if grid else []
    points += [full(_pairs(p, f"{path}: POINTS[{i}]"), f"{path}: POINTS[{i}]")
               for i, p in enumerate(spec.get("POINTS") or [])]
    space = {resolve_key(defaults, str(k), f"{path}: SPACE"): _distribution(str(k), v, str(path))
             for k, v in space_given.items()}
    if search["METHOD"] == "grid" if search else False:
        ranges = [k for k, d in space.items() if not hasattr(d, "choices")]
        if ranges:
            raise InputError(f"{path}: SEARCH.METHOD grid needs choices (a list) for every SPACE key; "
                             f"{ranges[0]} is a range")
    if not points and not search:
        raise InputError(f"{path}: no points; give a GRID, POINTS, or a SEARCH with its SPACE")
    if not Path(spec["DATA"]).is_dir():
        raise InputError(f"{path}: DATA {spec['DATA']} is not a directory (from {Path.cwd()}); run `hybridpqa prepare` "
                         "or give the data folder's path")
    base = path.parent / spec["BASE"]
    read_yaml(base)  # a missing or broken base fails here, naming the file
    metrics = spec.get("METRICS")
    sweep = Sweep(path, base, Path(spec["DATA"]), shared, points, spec.get("SCORER"), [], search, space)
    first = sweep.config({}, "check", f"{path}: BASE + SET")
    metrics = metrics or [first.RETRIEVER.SOLVER.SELECT_METRIC]
    if not isinstance(metrics, list) or any(m not in RETRIEVE_METRICS for m in metrics):
        raise InputError(f"{path}: METRICS = {metrics!r}; each must be one of the metrics runs report: "
                         f"{', '.join(RETRIEVE_METRICS)}")
    sweep.metrics = list(metrics)
    for key, distribution in space.items():  # each end of each range, each choice: a valid config
        for value in _extremes(distribution):
            sweep.config({key: value}, "check", f"{path}: SPACE.{key} = {value!r}")
    return sweep
