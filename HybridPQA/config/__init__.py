"""Load, merge, validate and freeze a configuration.

    cfg = load_config("configs/quickstart.yaml", overrides=["RETRIEVER.SOLVER.ALPHA", "0.3"])

Merge order, later wins: defaults < experiment YAML (with `_BASE_` chains) < `.env` and
environment variables named HPQA__SECTION__KEY < command-line KEY VALUE pairs.
"""
from __future__ import annotations

import ast
import difflib
import math
import os
from pathlib import Path

import yaml
from dotenv import dotenv_values
from yacs.config import CfgNode as CN

from HybridPQA.config.defaults import get_cfg_defaults
from HybridPQA.config.validate import LOG_BACKENDS, METRICS, OPTIONAL_POSITIVE_INTS, get_key, validate
from HybridPQA.errors import InputError

__all__ = ["LOG_BACKENDS", "METRICS", "get_cfg_defaults", "get_key", "load_config", "read_yaml", "resolve_key", "search_settings",
           "validate"]

ENV_PREFIX = "HPQA__"
# keys whose default is not None but that also take None (the defaults file says what None means)
NULLABLE = {*OPTIONAL_POSITIVE_INTS, "DEVICE", "RETRIEVER.SOLVER.OPTIMIZER.MAX_GRAD_NORM",
            "RETRIEVER.SOLVER.OPTIMIZER.HEAD_LR",
            "RETRIEVER.DATA.TRAIN_DATA_PATH", "RETRIEVER.DATA.VAL_DATA_PATH", "RETRIEVER.DATA.TEST_DATA_PATH"}


def all_keys(cfg: CN, prefix: str = "") -> list[str]:
    """Every leaf key of `cfg`, dotted."""
    keys = []
    for name, value in cfg.items():
        keys += all_keys(value, f"{prefix}{name}.") if isinstance(value, CN) else [prefix + name]
    return keys


def _unknown_key(key: str, source: str, known: list[str]) -> InputError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; see HybridPQA/config/defaults.py"
    return InputError(f"{source}: unknown config key {key}{hint}")


def _decode(value):
    """YAML and command-line strings like 'None', '1e-5', '(0.9, 0.99)' become Python values."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _project_default(key: str):
    """The value defaults.py gives `key` (a key that is None there may be set back to None)."""
    node = get_cfg_defaults()
    for name in key.split("."):
        node = node.get(name) if isinstance(node, CN) else None
    return node


def _coerce(key: str, default, value, source: str):
    value = _decode(value)
    if value is None and default is not None and key not in NULLABLE and _project_default(key) is not None:
        raise InputError(f"{source}: {key} cannot be None; give a {type(default).__name__} like {default!r}")
    if default is None or value is None:
        if isinstance(value, dict):
            raise InputError(f"{source}: {key} takes a single value (a string, number or list), not a mapping {value!r}")
        return tuple(value) if isinstance(value, list) else value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (tuple, list)):
        if isinstance(value, str):  # a bare word is a list of one: LOG.BACKENDS tensorboard
            value = [value]
        ok = isinstance(value, (tuple, list))
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        example = "['a', 'b'] or one bare word" if isinstance(default, (tuple, list)) else repr(default)
        raise InputError(f"{source}: {key} must be a {type(default).__name__} like {example}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{source}: {key} = {value!r} must be a finite number")
    return value


def resolve_key(cfg: CN, key: str, source: str) -> str:
    """Full dotted key; a unique suffix such as SOLVER.ALPHA is accepted on the command line."""
    known = all_keys(cfg)
    if key in known:
        return key
    matches = [k for k in known if k.endswith("." + key)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InputError(f"{source}: {key} is ambiguous: it ends {len(matches)} keys ({', '.join(sorted(matches)[:4])}); "
                         "give more of the dotted path")
    raise _unknown_key(key, source, known)


def _set(cfg: CN, key: str, value, source: str) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for name in parents:
        node = node[name]
    if isinstance(node[leaf], CN):
        raise InputError(f"{source}: {key} is a section, not a key; set one of its keys")
    node[leaf] = _coerce(key, node[leaf], value, source)


def _merge_dict(cfg: CN, updates: dict, source: str, prefix: str = "") -> None:
    for name, value in updates.items():
        key = prefix + str(name)
        if "." in str(name):  # `SOLVER.ALPHA: 0.3` written as one key: the dotted path of a key or section
            *parents, name = key.split(".")
            node = cfg
            for part in parents:
                if not isinstance(node, CN) or part not in node:
                    raise _unknown_key(key, source, all_keys(cfg))
                node = node[part]
            if not isinstance(node, CN):
                raise _unknown_key(key, source, all_keys(cfg))
            prefix_here = ".".join(parents) + "."
        else:
            node = cfg
            for part in key.split(".")[:-1]:
                node = node[part]
            prefix_here = prefix
        if name not in node:
            raise _unknown_key(key, source, all_keys(cfg))
        if isinstance(node[name], CN):
            if not isinstance(value, dict):
                raise InputError(f"{source}: {key} is a section; give it a mapping of keys, got {value!r}")
            _merge_dict(cfg, value, source, prefix_here + name + ".")
        else:
            _set(cfg, prefix_here + name, value, source)


def read_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """One experiment file as a dict, its `_BASE_` chain merged underneath it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: experiment config not found; give an existing YAML file")
    if path.resolve() in _chain:
        raise InputError(f"{path}: _BASE_ cycle ({' -> '.join(p.name for p in (*_chain, path.resolve()))}); "
                         "remove one of the _BASE_ lines")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except RecursionError:
        raise InputError(f"{path}: YAML nested too deeply; an experiment config is a few levels of keys") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (offset {err.start}); re-save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"{where}: invalid YAML ({getattr(err, 'problem', err)}); fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: an experiment config must be a mapping of keys, got {type(data).__name__}")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise InputError(f"{path}: _BASE_ must be the path of another YAML file (relative to this one), got {base!r}")
    return _deep_update(read_yaml(path.parent / base, (*_chain, path.resolve())), data)


def _deep_update(base: dict, update: dict) -> dict:
    for name, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(name), dict):
            _deep_update(base[name], value)
        else:
            base[name] = value
    return base


def env_overrides(dotenv_path: str | Path | None = ".env") -> list[tuple[str, str, str]]:
    """(key, value, source) from a `.env` file and HPQA__ environment variables (these win)."""
    found = []
    if dotenv_path is not None and Path(dotenv_path).is_file():
        found += [(n, v, f"{dotenv_path} ({n})") for n, v in dotenv_values(dotenv_path).items()]
    found += [(n, v, f"environment variable {n}") for n, v in os.environ.items()]
    return [(n[len(ENV_PREFIX):].replace("__", "."), v, src) for n, v, src in found
            if n.startswith(ENV_PREFIX) and v is not None]


def check_overrides(overrides: list[str], source: str = "command line") -> None:
    """KEY VALUE pairs checked against the defaults (a known key, a value of its type) before anything
    heavy is imported: a typo is reported in a second, not after loading a model. The merged config
    is validated as a whole later (`load_config`)."""
    if len(overrides) % 2:
        raise InputError(f"{source}: overrides come in KEY VALUE pairs; {overrides[-1]!r} has no value")
    cfg = get_cfg_defaults()
    for key, value in zip(overrides[::2], overrides[1::2]):
        _set(cfg, resolve_key(cfg, key, source), value, source)


def _renamed(cfg: CN) -> None:
    """Keys under their old names, moved to the new ones: RETRIEVER.INDEX.ENGINE is STORE."""
    ix = cfg.RETRIEVER.INDEX
    if ix.ENGINE:
        if ix.STORE not in ("memory", ix.ENGINE):
            raise InputError(f"config: RETRIEVER.INDEX.ENGINE (the old name of STORE) is {ix.ENGINE!r}, STORE is "
                             f"{ix.STORE!r}; set STORE only")
        ix.STORE, ix.ENGINE = ix.ENGINE, ""


def load_config(path_yaml: str | Path | None = None, overrides: list[str] = (),
                dotenv_path: str | Path | None = ".env", freeze: bool = True, base: list[str] = ()) -> CN:
    """Defaults < `base` (KEY VALUE: what a zero-shot model says of itself) < YAML < .env < KEY VALUE
    overrides, validated and frozen."""
    cfg = get_cfg_defaults()
    for key, value in zip(base[::2], base[1::2]):
        _set(cfg, resolve_key(cfg, key, "the model"), value, "the model")
    if path_yaml is not None:
        experiment = read_yaml(path_yaml)
        if "PAPER" in experiment:  # a row of configs/paper/<table>/: its PAPER section is reproduce's
            raise InputError(f"{path_yaml}: a paper table's row (it has a PAPER section); run it with hybridpqa reproduce "
                             f"--table={Path(path_yaml).parent.name} --rows={experiment.get('EXP', Path(path_yaml).stem)} "
                             "--output=DIR")
        _merge_dict(cfg, experiment, str(path_yaml))
    return with_overrides(cfg, overrides, freeze, dotenv_path)


def with_overrides(cfg: CN, overrides: list[str] = (), freeze: bool = True,
                   dotenv_path: str | Path | None = None) -> CN:
    """A copy of `cfg` with .env's keys (`dotenv_path`) and then the KEY VALUE `overrides` set,
    validated (and frozen): a file's config read once and then overridden."""
    cfg = cfg.clone()
    cfg.defrost()
    for key, value, source in env_overrides(dotenv_path):
        _set(cfg, resolve_key(cfg, key, source), value, source)
    check_overrides(overrides)
    for key, value in zip(overrides[::2], overrides[1::2]):
        _set(cfg, resolve_key(cfg, key, "command line"), value, "command line")
    _renamed(cfg)
    validate(cfg)
    if freeze:
        cfg.freeze()
    return cfg


SEARCH_SETTINGS = "RETRIEVER.INDEX"  # what a search-settings file (`search --settings`, `serve --settings`) may set


def search_settings(path: str | Path) -> list[str]:
    """A search-settings YAML (e.g. configs/search/1m.yaml: engines, their parameters, k' per head) as
    KEY VALUE overrides; any key outside RETRIEVER.INDEX is refused, naming the file and the key."""
    flat: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                walk(value, name)
            elif not name.startswith(SEARCH_SETTINGS + "."):
                raise InputError(f"{path}: {name}: a search-settings file sets {SEARCH_SETTINGS} keys only; "
                                 "put the rest in the experiment config")
            else:
                flat.extend([name, str(value)])

    walk(read_yaml(path), "")
    return flat
