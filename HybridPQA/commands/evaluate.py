"""Evaluate a checkpoint, or a pretrained model zero-shot, on one split.

Usage:
  hybridpqa evaluate --output=DIR --data=DIR [--config=FILE] [--checkpoint=PATH] [--split=NAME] [--overwrite] [--print-config] [--env=FILE] [<KEY_VALUE>...]
  hybridpqa evaluate --run=FILE --qrels=FILE [--metrics=LIST]
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
  --run=FILE         score a TREC run (e.g. of `hybridpqa search`) against --qrels, nothing else
  --qrels=FILE       TREC or BEIR qrels (qrels/test.tsv), or a pairs split (.json / .csv)
  --metrics=LIST     comma-separated ranx metrics [default: ndcg@10,recall@100,mrr@10,map]

Searching a corpus that has no qrels at all is `hybridpqa index` + `hybridpqa search`.

Examples:
  hybridpqa evaluate --run=output/scifact.trec --qrels=data/raw/scifact/qrels/test.tsv
  hybridpqa evaluate --output=output --data=data/raw/scifact --split=test --config=configs/zero_shot_scifact.yaml
"""
from __future__ import annotations

from pathlib import Path

from HybridPQA.commands.common import check_data, experiment_config, parse, results_table
from HybridPQA.errors import InputError


def evaluate(output: str | Path, data: str | Path, config: str | Path | None = None, checkpoint: str | Path | None = None,
             split: str | None = None, overrides: list[str] = (), *, overwrite: bool = False, env: str | None = ".env",
             argv: list[str] | None = None) -> dict:
    """Evaluate and print the results table; returns {split: results}."""
    from HybridPQA.pipeline import evaluate_only
    from HybridPQA.rundir import RunDir
    from HybridPQA.runtime import log_environment, setup_logging

    checkpoint = str(checkpoint) if checkpoint is not None else None
    cfg = experiment_config(str(config) if config is not None else None, list(overrides), env, checkpoint, zero_shot=True)
    check_data(str(data))
    run_dir = RunDir.at(output, cfg.EXP)
    with run_dir.lock():
        setup_logging(run_dir.path)
        log_environment(argv)
        results = evaluate_only(cfg, run_dir, Path(data), checkpoint, split, overwrite)
    print(results_table(results))
    print(f"run directory: {run_dir}")
    return results


def score(run: str | Path, qrels: str | Path, metrics: list[str]) -> dict:
    """Metrics of a TREC run on the qrels' judged queries; printed as JSON."""
    import json

    from HybridPQA.evaluation.metrics import check_metric, score_run
    from HybridPQA.data.trec import read_judgements, read_trec

    metrics = [check_metric(m.strip(), "--metrics") for m in metrics if m.strip()]
    if not metrics:
        raise InputError("--metrics: no metric named; give a comma-separated list, e.g. --metrics=ndcg@10,map")
    judged = read_judgements(qrels)
    ranked = read_trec(Path(run))
    positive = {q for q, docs in judged.items() if any(r > 0 for r in docs.values())}
    overlap = positive & set(ranked)
    if not overlap:
        raise InputError(f"--run={run}: none of its {len(ranked)} queries is among the {len(positive)} judged queries of "
                         f"--qrels={qrels}; it would score 0; give the run and qrels of the same query set")
    values = score_run(ranked, judged, metrics)
    out = {"run": str(run), "qrels": str(qrels), "queries": len(positive), "queries_in_run": len(overlap),
           "metrics": values}
    print(json.dumps(out, indent=2))
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse(__doc__, argv, "evaluate")
    if args["--run"]:
        return score(args["--run"], args["--qrels"], args["--metrics"].split(","))
    if args["--print-config"]:
        print(experiment_config(args["--config"], args["<KEY_VALUE>"], args["--env"], args["--checkpoint"],
                                zero_shot=True).dump(),
              end="")
        return {}
    return evaluate(args["--output"], args["--data"], args["--config"], args["--checkpoint"], args["--split"],
                    args["<KEY_VALUE>"], overwrite=args["--overwrite"], env=args["--env"],
                    argv=["evaluate", *(argv or [])])
