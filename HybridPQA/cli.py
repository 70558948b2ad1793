"""HybridPQA: train and evaluate hybrid lexical + semantic dual encoders.

Usage:
  hybridpqa train --path_output=DIR --path_data=DIR --path_cfg_exp=FILE [--overwrite | --resume] [--print-config] [--env=FILE] [<KEY_VALUE>...]
  hybridpqa evaluate --path_output=DIR --path_data=DIR [--path_cfg_exp=FILE] [--checkpoint=PATH] [--split=NAME] [--overwrite] [--print-config] [--env=FILE] [<KEY_VALUE>...]
  hybridpqa prepare [--path_raw=DIR] [--path_models=DIR] [--path_out=DIR]
  hybridpqa fuse --runs=FILES --output=FILE [--method=NAME] [--norm=NAME] [--alpha=A] [--weights=LIST] [--rrf_k=K] [--qrels=FILE [--tune] [--metric=NAME]]
  hybridpqa export --index=DIR --output=DIR [--quantization=Q]
  hybridpqa mine --run=FILE --path_data=DIR --split=NAME --output=FILE [--depth=N] [--overwrite]
  hybridpqa explain --checkpoint=PATH (--query=TEXT --document=TEXT | --path_data=DIR --split=NAME --qid=ID [--docid=ID]) [--html=FILE] [--top=N]
  hybridpqa reproduce --table=NAME --path_output=DIR [--steps=N] [--dry-run] [--overwrite]
  hybridpqa sweep --path_cfg_sweep=FILE --path_output=DIR [--jobs=N] [--dry-run] [--overwrite]
  hybridpqa -h | --help

Options:
  --path_output=DIR    runs go to DIR/<EXP>/
  --path_data=DIR      folder the config's RETRIEVER.DATA.*_DATA_PATH are relative to
  --path_cfg_exp=FILE  experiment YAML (only the keys that differ from the defaults)
  --overwrite          replace a non-empty run directory (or existing results)
  --resume             continue the run in DIR/<EXP>/ from checkpoints/last
  --print-config       print the merged config and exit, loading no model or data
  --env=FILE           dotenv file with HPQA__SECTION__KEY=value lines [default: .env]
  --checkpoint=PATH    checkpoint directory to evaluate; default: PRETRAINED_MODEL_TYPE, zero-shot
  --path_raw=DIR       where raw datasets are copied or downloaded [default: data/raw]
  --path_models=DIR    where splade-tiny is copied or unpacked [default: models]
  --path_out=DIR       where the product-QA experiment is written [default: data/product-qa]
  --runs=FILES         comma-separated TREC runs to fuse, e.g. a dense and a sparse run of one split
  --output=FILE        fused TREC run to write (fuse); folder for the Pyserini files (export)
  --method=NAME        linear (weighted sum) or rrf (reciprocal rank fusion) [default: linear]
  --norm=NAME          linear: none, min-max or z-score, per query [default: none]
  --alpha=A            linear, two runs: weight of the first run, 1 - A for the second [default: 0.5]
  --weights=LIST       linear: comma-separated weights, one per run (instead of --alpha)
  --rrf_k=K            rrf: the k in 1 / (k + rank) [default: 60]
  --qrels=FILE         BEIR qrels .tsv or TREC qrels: print each input's and the fused run's metrics
  --tune               choose --alpha (linear, two runs) or --rrf_k on --qrels with ranx's optimize_fusion
  --metric=NAME        metric to tune and report [default: ndcg@10]
  --index=DIR          a saved sparse index, <run>/index/<split>/sparse
  --quantization=Q     integer impacts = round(weight * Q) [default: 100]
  --run=FILE           mine: a TREC run over the split's questions (BM25's or a trained model's)
  --depth=N            mine: negatives per question, the run's top N that are not positives [default: 30]
  --split=NAME         evaluate, mine, explain: NAME.json, NAME.csv or qrels/NAME.tsv in --path_data
  --query=TEXT         explain: a question
  --document=TEXT      explain: a document
  --qid=ID             explain: a question of --split; with no --docid, its top-ranked candidate
                       (on a corpus split, its first positive)
  --docid=ID           explain: a document of --split
  --html=FILE          explain: also write a self-contained HTML page
  --top=N              explain: expansion terms to show [default: 15]
  --table=NAME         reproduce: configs/paper/NAME/*.yaml, e.g. product-qa or scifact
  --steps=N            reproduce: train every row for N steps instead of its own (a quick look)
  --dry-run            reproduce, sweep: list the rows or points and what would run, run nothing
  --path_cfg_sweep=FILE  sweep: a base experiment plus a GRID and/or POINTS of overrides (configs/sweeps/)
  --jobs=N             sweep: points trained at once, each its own process [default: 1]

Trailing KEY VALUE pairs override the config, e.g. RETRIEVER.SOLVER.ALPHA 0.3 (a unique suffix
such as SOLVER.ALPHA is enough). Merge order: defaults < YAML < .env < KEY VALUE.

Examples:
  hybridpqa prepare
  hybridpqa train --path_output=output --path_data=data/product-qa --path_cfg_exp=configs/quickstart.yaml
  hybridpqa evaluate --path_output=output --path_data=data/raw/scifact --split=test --path_cfg_exp=configs/zero_shot_scifact.yaml
  hybridpqa fuse --runs=output/zero_shot_scifact/runs/test.dense.trec,output/zero_shot_scifact/runs/test.sparse.trec --norm=z-score --qrels=data/raw/scifact/qrels/test.tsv --tune --output=fused.trec
  hybridpqa export --index=output/zero_shot_scifact/index/test/sparse --output=output/pyserini
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from docopt import docopt

from HybridPQA.errors import InputError

log = logging.getLogger("HybridPQA")


def _config(args: dict):
    from HybridPQA.config import load_config

    cfg_path = args["--path_cfg_exp"]
    if cfg_path is None and args.get("--checkpoint"):
        cfg_path = Path(args["--checkpoint"]) / "config.yaml"  # evaluate a checkpoint with its own config
    return load_config(cfg_path, args["<KEY_VALUE>"], dotenv_path=args["--env"])


def _int(args: dict, flag: str) -> int:
    try:
        value = int(args[flag])
    except ValueError:
        raise InputError(f"{flag}={args[flag]}: expected a positive integer") from None
    if value < 1:
        raise InputError(f"{flag}={args[flag]}: expected a positive integer")
    return value


def main(argv: list[str] | None = None) -> dict:
    """Parse, run, and return the results ({split: results}) so sweeps and tests can call it."""
    args = docopt(__doc__, argv=argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the model's threads own the cores
    try:
        return _dispatch(args, argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        again = "the same command with --resume instead of --overwrite" if args["train"] else "the same command"
        print(f"\ninterrupted; to continue, run {again} (finished work is kept)", file=sys.stderr)
        raise SystemExit(130) from None


def _dispatch(args: dict, argv: list[str] | None) -> dict:
    from HybridPQA.engine import run

    if args["prepare"]:
        from HybridPQA.data.assets import fetch_all
        from HybridPQA.data.prepare import prepare_product_qa

        run.setup_logging()
        fetch_all(Path(args["--path_raw"]), Path(args["--path_models"]))
        stats = prepare_product_qa(Path(args["--path_raw"]) / "hetpqa", Path(args["--path_out"]))
        print(json.dumps({k: v for k, v in stats.items() if k != "input_issues"}, indent=2))
        return stats
    if args["fuse"]:
        from HybridPQA.retrieval.commands import fuse_command

        return fuse_command(args)
    if args["reproduce"]:
        from HybridPQA.paper import reproduce

        run.setup_logging()
        steps = _int(args, "--steps") if args["--steps"] else None
        report = reproduce(args["--table"], args["--path_output"], steps, args["--dry-run"], args["--overwrite"])
        if any(line.startswith("FAIL") for line in report.get("checks", [])):
            raise SystemExit(1)
        return report
    if args["sweep"]:
        from HybridPQA.sweep import sweep

        run.setup_logging()
        report = sweep(args["--path_cfg_sweep"], args["--path_output"], _int(args, "--jobs"), args["--dry-run"],
                       args["--overwrite"])
        if report.get("failures"):
            raise SystemExit(1)
        return report
    if args["explain"]:
        from HybridPQA.evaluation.explain import explain_command

        run.setup_logging()
        explain_command(args, _int(args, "--top"))
        return {}
    if args["mine"]:
        from HybridPQA.retrieval.commands import mine_command

        return mine_command(args, _int(args, "--depth"))
    if args["export"]:
        from HybridPQA.retrieval.export import export_pyserini

        counts = export_pyserini(Path(args["--index"]), Path(args["--output"]), _int(args, "--quantization"))
        print(json.dumps(counts, indent=2))
        return counts
    cfg = _config(args)
    if args["--print-config"]:
        print(cfg.dump(), end="")
        return {}
    if not Path(args["--path_data"]).is_dir():
        raise InputError(f"--path_data={args['--path_data']}: not a directory; run `hybridpqa prepare` first")
    from HybridPQA.files import run_lock

    run_dir = run.run_dir_of(args["--path_output"], cfg)
    if args["train"]:
        from HybridPQA.engine.distributed import build_distributed

        ranks = build_distributed(cfg)  # None unless DISTRIBUTED under torchrun
        main_rank = ranks is None or ranks.main
        with run_lock(run_dir) if main_rank else contextlib.nullcontext():  # rank 0 holds it for the job
            if main_rank:
                run.prepare_run_dir(args["--path_output"], cfg, args["--overwrite"], args["--resume"])
            if ranks is not None:
                ranks.barrier()  # rank 0 has checked and cleared the run directory
            run.setup_logging(run_dir, main=main_rank)
            run.log_environment(argv)
            results = run.train_and_test(cfg, run_dir, Path(args["--path_data"]), resume=args["--resume"], ranks=ranks)
    else:
        with run_lock(run_dir):
            run.setup_logging(run_dir)
            run.log_environment(argv)
            results = run.evaluate_only(cfg, run_dir, Path(args["--path_data"]), args["--checkpoint"], args["--split"],
                                        args["--overwrite"])
    if results:
        print(run.results_table(results))
        print(f"run directory: {run_dir}")
    return results


def entry_point() -> None:
    """Console script: run main() and exit 0 (its return value is for Python callers)."""
    main()


if __name__ == "__main__":
    entry_point()
