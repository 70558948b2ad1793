"""Train a model from an experiment YAML, then test it on the splits the config names.

Usage:
  hybridpqa train --output=DIR --data=DIR --config=FILE [--overwrite | --resume] [--print-config] [--env=FILE] [<KEY_VALUE>...]
  hybridpqa train -h | --help

Options:
  --output=DIR     runs go to DIR/<EXP>/ (old spelling: --path_output)
  --data=DIR       folder the config's RETRIEVER.DATA.*_DATA_PATH are relative to (old: --path_data)
  --config=FILE    experiment YAML, only the keys that differ from the defaults (old: --path_cfg_exp)
  --overwrite      replace a non-empty run directory
  --resume         continue the run in DIR/<EXP>/ from checkpoints/last
  --print-config   print the merged config and exit, loading no model or data
  --env=FILE       dotenv file with HPQA__SECTION__KEY=value lines [default: .env]

Trailing KEY VALUE pairs override the config, e.g. RETRIEVER.SOLVER.ALPHA 0.3 (a unique suffix such
as SOLVER.ALPHA is enough). Merge order: defaults < YAML < .env < KEY VALUE. Under torchrun with
DISTRIBUTED True every rank trains; rank 0 writes, logs and evaluates.

Example:
  hybridpqa train --output=output --data=data/product-qa --config=configs/quickstart.yaml
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from HybridPQA.commands.common import check_data, experiment_config, parse, results_table


def train(output: str | Path, data: str | Path, config: str | Path, overrides: list[str] = (), *,
          overwrite: bool = False, resume: bool = False, env: str | None = ".env", argv: list[str] | None = None) -> dict:
    """Train, test, print the results table; returns {split: results}."""
    cfg = experiment_config(str(config), list(overrides), env)  # a typo fails here, before torch is imported
    check_data(str(data))
    from HybridPQA.distributed import build_distributed
    from HybridPQA.pipeline import train_and_test
    from HybridPQA.rundir import RunDir
    from HybridPQA.runtime import log_environment, setup_logging

    run_dir = RunDir.at(output, cfg.EXP)
    ranks = build_distributed(cfg)  # None unless DISTRIBUTED under torchrun
    main_rank = ranks is None or ranks.main
    with run_dir.lock() if main_rank else contextlib.nullcontext():  # rank 0 holds it for the whole job
        if main_rank:
            run_dir.prepare(cfg, overwrite, resume)
        if ranks is not None:
            ranks.barrier()  # rank 0 has checked and cleared the run directory
        setup_logging(run_dir.path, main=main_rank)
        log_environment(argv)
        results = train_and_test(cfg, run_dir, Path(data), resume=resume, ranks=ranks)
    if results:
        print(results_table(results))
        print(f"run directory: {run_dir}")
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "train")
    if args["--print-config"]:
        print(experiment_config(args["--config"], args["<KEY_VALUE>"], args["--env"]).dump(), end="")
        return {}
    return train(args["--output"], args["--data"], args["--config"], args["<KEY_VALUE>"], overwrite=args["--overwrite"],
                 resume=args["--resume"], env=args["--env"], argv=["train", *(argv or [])])
