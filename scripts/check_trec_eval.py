"""Score a run directory's TREC runs with trec_eval (pytrec_eval) and with HybridPQA (ranx), side by side.

Usage:
  check_trec_eval.py --data=DIR --split=NAME <run_dir>...

Options:
  --data=DIR     the folder the runs' split is in (as given to train / evaluate)
  --split=NAME   the split the runs rank: runs/NAME.<scorer>.trec, and NAME.json / qrels/NAME.tsv in --data

Prints, per run file, MAP, nDCG@5, nDCG@10, P@1 and MRR from both, and the largest difference.
Exit status 1 when any differs by more than 1e-4.
"""
import sys
from pathlib import Path

import numpy as np
import pytrec_eval
from docopt import docopt

from HybridPQA.data import find_split, read_split
from HybridPQA.evaluation.metrics import score_run
from HybridPQA.data.trec import read_trec
from HybridPQA.rundir import RunDir

PAIRS = {"map": "map", "ndcg@5": "ndcg_cut_5", "ndcg@10": "ndcg_cut_10", "precision@1": "P_1", "mrr": "recip_rank"}


def compare(run_file: Path, qrels: dict) -> tuple[dict, dict]:
    run = read_trec(run_file)
    judged = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    judged = {q: docs for q, docs in judged.items() if docs}
    ours = score_run(run, judged, list(PAIRS))
    per_query = pytrec_eval.RelevanceEvaluator(judged, {"map", "ndcg_cut.5,10", "P.1", "recip_rank"}).evaluate(
        {q: run.get(q, {}) for q in judged})
    # trec_eval leaves out queries the run lacks; they score 0 in ranx and here
    theirs = {name: float(np.sum([v[key] for v in per_query.values()]) / len(judged)) for name, key in PAIRS.items()}
    return ours, theirs


def main() -> int:
    args = docopt(__doc__)
    split = read_split(find_split(args["--data"], args["--split"]))
    worst = 0.0
    print("| run | " + " | ".join(f"{m} ours / trec_eval" for m in PAIRS) + " | max diff |")
    print("|---|" + "---|" * (len(PAIRS) + 1))
    for run_dir in map(RunDir, args["<run_dir>"]):
        for run_file in sorted((run_dir / "runs").glob(f"{args['--split']}.*.trec")):
            ours, theirs = compare(run_file, split.qrels)
            diff = max(abs(ours[m] - theirs[m]) for m in PAIRS)
            worst = max(worst, diff)
            cells = " | ".join(f"{ours[m]:.4f} / {theirs[m]:.4f}" for m in PAIRS)
            print(f"| {run_dir.path.name}/{run_file.name} | {cells} | {diff:.1e} |")
    print(f"\nlargest difference: {worst:.1e} ({'OK' if worst <= 1e-4 else 'FAIL'}: 1e-4 allowed)")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
