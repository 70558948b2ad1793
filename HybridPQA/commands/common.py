"""What every command shares: parsing its own usage, old flag spellings, one-line errors, results."""
from __future__ import annotations

import math
import re
from importlib.metadata import PackageNotFoundError, version

from docopt import DocoptExit, docopt

from HybridPQA.errors import InputError

# one spelling for where a command reads and writes; the old ones are still accepted
ALIASES = {"--path_output": "--output", "--path_out": "--output", "--html": "--output", "--path_data": "--data",
           "--path_cfg_exp": "--config", "--path_cfg_sweep": "--config", "--path_raw": "--raw",
           "--path_models": "--models", "--engine": "--store"}


def package_version() -> str:
    try:
        return f"HybridPQA {version('HybridPQA')}"
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "HybridPQA (not installed)"


def _renamed(argv: list[str], usage: str) -> list[str]:
    """Old flag spellings rewritten to the ones `usage` uses (a flag its usage lines have is left alone)."""
    usage = usage.split("Options:", 1)[0]
    out = []
    for token in argv:
        name, eq, value = token.partition("=")
        new = ALIASES.get(name)
        out.append(new + eq + value if new and not re.search(rf"{re.escape(name)}\b", usage) else token)
    return out


def _outside_brackets(line: str) -> str:
    """`line` without its [optional] and (a | b) groups."""
    while True:
        stripped = re.sub(r"\[[^\[\]]*\]|\([^()]*\)", " ", line)
        if stripped == line:
            return line
        line = stripped


def _one_line(usage: str, argv: list[str], command: str) -> str:
    """Why `argv` does not fit `usage`, in one line: an unknown flag, a missing one, or the usage."""
    lines = [line.strip() for line in usage.split("Usage:", 1)[1].strip().splitlines()]
    first = lines[0]
    known = set(re.findall(r"--[\w-]+", usage)) | {"-h"}
    given = [token.partition("=")[0] for token in argv if token.startswith("-")]
    unknown = [flag for flag in given if flag not in known and not any(k.startswith(flag) for k in known)]
    if unknown:
        return f"hybridpqa {command}: unknown flag {unknown[0]}; see `hybridpqa {command} --help`"
    missing = [flag for flag in re.findall(r"--[\w-]+=?\w*", _outside_brackets(first))
               if flag.partition("=")[0] not in given]
    if missing:
        return f"hybridpqa {command}: missing {', '.join(missing)}; usage: {first}"
    return f"hybridpqa {command}: these arguments do not fit its usage: {' '.join(argv)}; usage: {first}"


def parse(usage: str, argv: list[str] | None, command: str) -> dict:
    """docopt of `usage` (the command module's docstring) over `argv`, old spellings renamed. --help
    prints the usage and --version the version (exit 0); arguments that do not fit raise InputError."""
    argv = _renamed(list(argv or []), usage)
    try:
        args = docopt(usage, argv=[command, *argv], version=package_version())  # the usage names the command
    except DocoptExit as err:
        reason = str(err.code or "").splitlines()[0] if err.code else ""
        if reason.endswith("requires argument"):
            raise InputError(f"hybridpqa {command}: {reason}, as in {reason.split()[0]}=VALUE") from None
        raise InputError(_one_line(usage, argv, command)) from None
    if args.get("<KEY_VALUE>"):  # a mistyped key fails here, before any model or library is loaded
        from HybridPQA.config import check_overrides

        check_overrides(args["<KEY_VALUE>"])
    return args


def positive_int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InputError(f"{flag}={text}: expected a positive integer") from None
    if value < 1:
        raise InputError(f"{flag}={text}: expected a positive integer")
    return value


def finite_float(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag}={text}: expected a number") from None
    if not math.isfinite(value):
        raise InputError(f"{flag}={text}: expected a finite number")
    return value


def results_table(results: dict[str, dict], metrics: tuple[str, ...] = ("mrr@5", "map", "ndcg@5", "ndcg@10",
                                                                        "precision@1", "hit_rate@5")) -> str:
    """Markdown table: one row per (split, scorer)."""
    rows = ["| split | scorer | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for split, res in results.items():
        extra = [m for m in res["metrics"][next(iter(res["metrics"]))] if m not in metrics]
        for scorer, values in res["metrics"].items():
            cells = [f"{values[m]:.4f}" if m in values else "" for m in metrics]
            named = f"{scorer} (default)" if scorer == res.get("default_scorer") else scorer
            rows.append(f"| {split} | {named} | " + " | ".join(cells) + " |")
        if extra:
            rows.append(f"| {split} | | also in results/{split}.json: {', '.join(extra)} |")
    return "\n".join(rows)


def experiment_config(config: str | None, overrides: list[str], env: str | None, checkpoint: str | None = None,
                      zero_shot: bool = False):
    """The merged config: defaults < `config` (else the checkpoint's own config.yaml) < .env < KEY VALUE;
    `zero_shot` (evaluate): nothing is trained (DO_TRAIN False above all, so BM25 needs no flag), and
    without a checkpoint what the model says of itself goes beneath all of them (the loader's one
    rule, modeling.pretrained.SavedModel.config)."""
    from HybridPQA.config import load_config

    if zero_shot:
        overrides = [*overrides, "RETRIEVER.DO_TRAIN", "False"]
    if checkpoint:
        from HybridPQA.modeling.pretrained import SavedModel

        return SavedModel(checkpoint).config(config, overrides, env)
    cfg = load_config(config, overrides, dotenv_path=env)
    if zero_shot and cfg.RETRIEVER.MODEL.BIENCODER_TYPE not in ("bm25", "cross"):
        from HybridPQA.modeling.pretrained import SavedModel

        return SavedModel(cfg.RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE).config(config, overrides, env)
    return cfg


def check_data(data: str) -> None:
    from pathlib import Path

    if not Path(data).is_dir():
        raise InputError(f"--data={data}: not a directory; run `hybridpqa prepare` first")
