"""Search hyper-parameters: a grid run, or a search (grid, random, TPE) pruned on the validation
metric and shared by any number of workers through one Optuna storage (see configs/sweeps/).

Usage:
  hybridpqa sweep --config=FILE --output=DIR [--jobs=N] [--storage=URL] [--study=NAME] [--grace=SECONDS] [--trials=N] [--dry-run] [--overwrite]
  hybridpqa sweep -h | --help

Options:
  --config=FILE      a sweep file: a base experiment plus a GRID / POINTS, or a SEARCH and its SPACE (old spelling: --path_cfg_sweep)
  --output=DIR       every point or trial is a run directory DIR/<name>/ (old: --path_output)
  --jobs=N           points or trials trained at once, each its own process on its share of the cores [default: 1]
  --storage=URL      a search's Optuna storage: sqlite:///FILE, postgresql://USER@HOST/DB, journal:FILE or redis://HOST
                     (default: sqlite:///DIR/study.db); every worker that names it joins the study
  --study=NAME       the study's name in the storage (default: the sweep file's name)
  --grace=SECONDS    a trial whose worker sent no heartbeat for this long is failed and retried [default: 120]
  --trials=N         a search's budget instead of SEARCH.TRIALS (rerun with a larger one to extend the study)
  --dry-run          list the points (or the space and the study's trials) and what would run, run nothing
  --overwrite        rerun grid points whose saved config differs

Examples:
  hybridpqa sweep --config=configs/sweeps/alpha.yaml --output=output/sweeps/alpha --jobs=2
  hybridpqa sweep --config=configs/sweeps/tpe.yaml --output=output/sweeps/tpe-a --storage=postgresql://hpqa@db-host/sweeps

Exit status 1 when a point or trial fails.
"""
from __future__ import annotations

from HybridPQA.commands.common import parse, positive_int


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "sweep")  # flags checked before the sweep's libraries load
    from HybridPQA.runtime import setup_logging
    from HybridPQA.sweeps import sweep

    setup_logging()
    report = sweep(args["--config"], args["--output"], positive_int(args["--jobs"], "--jobs"), args["--dry-run"],
                   args["--overwrite"], args["--storage"], args["--study"], positive_int(args["--grace"], "--grace"),
                   positive_int(args["--trials"], "--trials") if args["--trials"] else None)
    if report.get("failures"):
        raise SystemExit(1)
    return report
