"""Print one Markdown table from the results/<split>.json of several run directories.

Usage:
  results_table.py [--split=NAME] [--metrics=LIST] <run_dir>...

Options:
  --split=NAME     which results file to read [default: test]
  --metrics=LIST   comma-separated ranx metric names [default: mrr@5,map,ndcg@5,precision@1,hit_rate@5]
"""
import json
import sys
from pathlib import Path

from docopt import docopt

nan = float("nan")


def table(run_dirs: list[str], split: str, metrics: list[str]) -> str:
    rows = ["| run | scorer | " + " | ".join(metrics) + " | GFLOPs/query | FLOPs/pair (sparse) | latency p50 ms |",
            "|---|---|" + "---|" * (len(metrics) + 3)]
    for run_dir in run_dirs:
        path = Path(run_dir) / "results" / f"{split}.json"
        if not path.is_file():
            sys.exit(f"error: {path} not found; run the experiment first")
        res = json.loads(path.read_text())
        for scorer, values in res["metrics"].items():
            eff = res.get("efficiency", {}).get(scorer, {})
            cells = [f"{values.get(m, nan):.4f}" for m in metrics] + [
                f"{eff.get('gflops_per_query', nan):.3f}", f"{eff.get('expected_flops_per_pair', nan):.1f}",
                f"{eff.get('latency_ms_p50', nan):.1f}"]
            rows.append(f"| {Path(run_dir).name} | {scorer} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> str:
    args = docopt(__doc__, argv=argv)
    out = table(args["<run_dir>"], args["--split"], args["--metrics"].split(","))
    print(out)
    return out


if __name__ == "__main__":
    main()
