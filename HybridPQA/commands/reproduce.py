"""Run a paper table: every row of configs/paper/<table>/ trained (or reused), evaluated and
checked against its expected numbers; writes table.{md,csv,tex}, plots, checks.txt and report.json.

Usage:
  hybridpqa reproduce --table=NAME --output=DIR [--rows=NAMES] [--steps=N] [--dry-run] [--overwrite]
  hybridpqa reproduce -h | --help

Options:
  --table=NAME   configs/paper/NAME/*.yaml, e.g. product-qa or scifact
  --output=DIR   the table goes to DIR/NAME/ (old spelling: --path_output)
  --rows=NAMES   only these rows (EXP names, comma-separated), the rows their PAIRS and claims compare them with,
                 and the rows they read; the table shows the others from earlier runs in DIR, or "not run"
  --steps=N      train every row N steps into DIR/NAME-stepsN/ instead of its own (a quick look)
  --dry-run      list the rows and what would run, run nothing
  --overwrite    rerun rows whose saved config differs from what the table now gives

Exit status 1 when a check FAILs.
"""
from __future__ import annotations

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.errors import InputError


def main(argv: list[str] | None = None) -> dict:
    from HybridPQA.paper import reproduce
    from HybridPQA.runtime import setup_logging

    args = parse(__doc__, argv, "reproduce")
    setup_logging()
    steps = positive_int(args["--steps"], "--steps") if args["--steps"] else None
    rows = [r.strip() for r in args["--rows"].split(",") if r.strip()] if args["--rows"] is not None else None
    if rows == []:
        raise InputError(f"--rows={args['--rows']}: name at least one row (its EXP), e.g. --rows=minilm_lexical")
    report = reproduce(args["--table"], args["--output"], steps, args["--dry-run"], args["--overwrite"], rows=rows)
    if any(line.startswith("FAIL") for line in report.get("checks", [])):
        raise SystemExit(1)
    return report
