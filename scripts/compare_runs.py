"""Each TREC run against the first one on the same qrels: the metric and a paired t-test (ranx).

Usage:
  compare_runs.py --qrels=FILE [--metric=NAME] <run>...

Options:
  --qrels=FILE    BEIR qrels .tsv, TREC qrels, or a pairs .json split with graded labels
  --metric=NAME   ranx metric [default: ndcg@10]

Only judged queries with a positive count; a query a run lacks scores 0 there. p is the two-sided
paired t-test of each run against the first (not corrected for the number of runs).
"""
from pathlib import Path

from docopt import docopt
from ranx import Qrels, Run, compare

from HybridPQA.data.trec import read_judgements, read_trec


def main(argv=None) -> dict:
    args = docopt(__doc__, argv=argv)
    metric, files = args["--metric"], args["<run>"]
    labels = read_judgements(args["--qrels"])
    judged = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in labels.items()}
    qrels = Qrels({q: docs for q, docs in judged.items() if docs})
    runs = [Run(read_trec(Path(f)), name=f"r{i}") for i, f in enumerate(files)]
    report = compare(qrels, runs, [metric], stat_test="student", make_comparable=True)
    out = {}
    for i, f in enumerate(files):
        value = float(report.results[f"r{i}"][metric])
        p = None if i == 0 else float(report.comparisons[("r0", f"r{i}")][metric]["p_value"])
        out[f] = {metric: value, "p_vs_first": p}
        print(f"{value:.4f}  {'(first)' if p is None else f'p={p:.3g}'}  {f}")
    return out


if __name__ == "__main__":
    main()
