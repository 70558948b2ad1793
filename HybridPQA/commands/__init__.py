"""HybridPQA: train and evaluate hybrid lexical + semantic dual encoders.

Usage:
  hybridpqa <command> [<args>...]
  hybridpqa --version
  hybridpqa -h | --help

Commands:
  prepare    copy (or download) the data and splade-tiny, build the product-QA splits
  train      train a model from an experiment YAML, then test it
  evaluate   evaluate a checkpoint, or a pretrained model zero-shot, on one split
  fuse       fuse existing TREC runs (linear or RRF), optionally tuning the weight on qrels
  mine       write a training file whose hard negatives are a run's top documents
  index      encode any corpus into a saved sparse + dense index (resumable)
  search     search a saved index: a TREC run, or the top hits printed
  serve      serve saved indexes over HTTP: a search page and JSON endpoints
  benchmark  evaluate a model on several BEIR folders: one table of nDCG@10, R@100 and cost
  explain    why a model scored a document as it did (terms, matches, hybrid parts)
  export     a checkpoint as sentence-transformers folders, or an index as a Pyserini collection
  reproduce  run a paper table: every row trained, evaluated and checked
  sweep      search hyper-parameters (grid, random, TPE; pruned; many workers) and rank the trials
  compare    compare runs from any system: metrics, paired tests, per-query wins and losses

`hybridpqa <command> --help` prints that command's usage, options and examples. Every command
reads --data / --config / --checkpoint / --runs and writes --output (the old spellings
--path_data, --path_cfg_exp, --path_cfg_sweep, --path_output, --path_out and --html still work).

Examples:
  hybridpqa prepare
  hybridpqa train --output=output --data=data/product-qa --config=configs/quickstart.yaml
"""
from __future__ import annotations

import importlib
import os
import sys

from HybridPQA.commands.common import package_version
from HybridPQA.errors import InputError

COMMANDS = ("prepare", "train", "evaluate", "index", "search", "serve", "benchmark", "fuse", "mine", "explain", "export",
            "reproduce", "sweep", "compare")


def run_command(argv: list[str]):
    """Dispatch `argv` ([command, flags...]) to HybridPQA.commands.<command>.main."""
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return {}
    if argv[0] == "--version":
        print(package_version())
        return {}
    if argv[0] not in COMMANDS:
        raise InputError(f"hybridpqa: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)} "
                         "(hybridpqa --help)")
    return importlib.import_module(f"HybridPQA.commands.{argv[0]}").main(argv[1:])


def main(argv: list[str] | None = None):
    """Parse, run, and return the command's results ({split: results} for train and evaluate), so
    sweeps and tests can call it in-process. Input errors: one line on stderr, exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the model's threads own the cores
    try:
        return run_command(argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        again = "the same command with --resume instead of --overwrite" if argv[:1] == ["train"] else "the same command"
        print(f"\ninterrupted; to continue, run {again} (finished work is kept)", file=sys.stderr)
        raise SystemExit(130) from None


def entry_point() -> None:
    """Console script: run main() and exit 0 (its return value is for Python callers)."""
    main()
