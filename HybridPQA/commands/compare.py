"""Compare runs from any system on one set of judgements: each run's metrics, paired t-tests of
every run against the first (corrected for the number of runs), per-query wins / ties / losses,
and a plot of the per-query differences.

Usage:
  hybridpqa compare <run>... --qrels=FILE [--metrics=LIST] [--correction=NAME] [--split=NAME] [--scorer=NAME] [--output=DIR] [--overwrite]
  hybridpqa compare -h | --help

Options:
  --qrels=FILE       BEIR qrels .tsv, TREC qrels, or a pairs split (.json / .csv) with its labels
  --metrics=LIST     comma-separated ranx metrics; the first one is plotted [default: ndcg@10]
  --correction=NAME  holm, bonferroni or none, over the runs compared with the first [default: holm]
  --split=NAME       a run directory's split: its runs/<split>.<scorer>.trec [default: test]
  --scorer=NAME      a run directory's scorer, where it has several runs (hybrid, dense, sparse, ...)
  --output=DIR       also write compare.{md,csv,tex} and per_query.png there
  --overwrite        replace an earlier comparison in --output

A <run> is a TREC run file (ours, Pyserini's, any trec_eval input) or a run directory of ours.

Example:
  hybridpqa compare output/quickstart_dense/runs/test.dense.trec output/quickstart/runs/test.hybrid.trec --qrels=data/product-qa/test.json --metrics=mrr@5,ndcg@5
"""
from __future__ import annotations

from pathlib import Path

from HybridPQA.commands.common import parse
from HybridPQA.errors import InputError


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "compare")
    from HybridPQA.evaluation import comparison
    from HybridPQA.evaluation.metrics import check_metric
    from HybridPQA.evaluation.significance import CORRECTIONS
    from HybridPQA.outputs import claim, mark

    metrics = [m.strip() for m in args["--metrics"].split(",") if m.strip()]
    for metric in metrics or [""]:
        check_metric(metric, "--metrics")
    if args["--correction"] not in CORRECTIONS:
        raise InputError(f"--correction={args['--correction']}: use one of {', '.join(CORRECTIONS)}")
    output = claim(args["--output"], "comparison", args["--overwrite"]) if args["--output"] else None
    files = [comparison.run_file(r, args["--split"], args["--scorer"]) for r in args["<run>"]]
    report = comparison.compare(files, args["--qrels"], metrics, args["--correction"])
    header, body = comparison.rows(report, metrics)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    for row in [header, *body]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    print(comparison.note(report))
    if output is not None:
        mark(output, "comparison")
        written = comparison.write(report, metrics, Path(output))
        print("wrote " + ", ".join(str(p) for p in written))
    return {label: {m: {"value": means[m], **({"p": report["tests"][label][m].p} if label in report["tests"] else {})}
                    for m in metrics} for label, means in report["runs"].items()}
