"""Evaluate a checkpoint, or a pretrained model zero-shot, on one split.

Usage:
  hybridpqa evaluate --output=DIR --data=DIR [--config=FILE] [--checkpoint=PATH] [--split=NAME] [--overwrite] [--print-config] [--env=FILE] [<KEY_VALUE>...]
  hybridpqa evaluate -h | --help

Options:
  --output=DIR       results go to DIR/<EXP>/ (old spelling: --path_output)
  --data=DIR         folder with the split (old: --path_data)
  --config=FILE      experiment YAML; default: the checkpoint's own config.yaml (old: --path_cfg_exp)
  --checkpoint=PATH  checkpoint directory; default: PRETRAINED_MODEL_TYPE, zero-shot. A checkpoint of a
                     run that tuned its fusion (fusion.json) is evaluated with that fusion
  --split=NAME       NAME.json, NAME.csv or qrels/NAME.tsv in --data; default: TEST_DATA_PATH
  --overwrite        replace existing results of this split
  --print-config     print the merged config and exit
  --env=FILE         dotenv file with HPQA__SECTION__KEY=value lines [default: .env]

Example:
  hybridpqa evaluate --output=output --data=data/raw/scifact --split=test --config=configs/zero_shot_scifact.yaml
"""
from __future__ import annotations

from pathlib import Path

from HybridPQA.commands.common import check_data, experiment_config, parse, results_table


def evaluate(output: str | Path, data: str | Path, config: str | Path | None = None, checkpoint: str | Path | None = None,
             split: str | None = None, overrides: list[str] = (), *, overwrite: bool = False, env: str | None = ".env",
             argv: list[str] | None = None) -> dict:
    """Evaluate and print the results table; returns {split: results}."""
    from HybridPQA.pipeline import evaluate_only
    from HybridPQA.rundir import RunDir
    from HybridPQA.runtime import log_environment, setup_logging

    checkpoint = str(checkpoint) if checkpoint is not None else None
    cfg = experiment_config(str(config) if config is not None else None, list(overrides), env, checkpoint)
    check_data(str(data))
    run_dir = RunDir.at(output, cfg.EXP)
    with run_dir.lock():
        setup_logging(run_dir.path)
        log_environment(argv)
        results = evaluate_only(cfg, run_dir, Path(data), checkpoint, split, overwrite)
    print(results_table(results))
    print(f"run directory: {run_dir}")
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "evaluate")
    if args["--print-config"]:
        print(experiment_config(args["--config"], args["<KEY_VALUE>"], args["--env"], args["--checkpoint"]).dump(),
              end="")
        return {}
    return evaluate(args["--output"], args["--data"], args["--config"], args["--checkpoint"], args["--split"],
                    args["<KEY_VALUE>"], overwrite=args["--overwrite"], env=args["--env"],
                    argv=["evaluate", *(argv or [])])
