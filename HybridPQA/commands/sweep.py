"""Train one run per point of a hyper-parameter grid, resumably, and rank them in a leaderboard
(see configs/sweeps/ for the file format).

Usage:
  hybridpqa sweep --config=FILE --output=DIR [--jobs=N] [--dry-run] [--overwrite]
  hybridpqa sweep -h | --help

Options:
  --config=FILE   a sweep file: a base experiment plus a GRID and/or POINTS (old spelling: --path_cfg_sweep)
  --output=DIR    every point is a run directory DIR/<point>/ (old: --path_output)
  --jobs=N        points trained at once, each its own process on its share of the cores [default: 1]
  --dry-run       list the points and what would run, run nothing
  --overwrite     rerun points whose saved config differs

Exit status 1 when a point fails.
"""
from __future__ import annotations

from HybridPQA.commands.common import parse, positive_int


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "sweep")  # flags checked before the sweep's libraries load
    from HybridPQA.runtime import setup_logging
    from HybridPQA.sweep import sweep

    setup_logging()
    report = sweep(args["--config"], args["--output"], positive_int(args["--jobs"], "--jobs"), args["--dry-run"],
                   args["--overwrite"])
    if report.get("failures"):
        raise SystemExit(1)
    return report
