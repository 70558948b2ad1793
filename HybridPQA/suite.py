"""A model on several BEIR folders, each by its qrels/test.tsv, in one table (as BEIR, NanoBEIR and
MTEB report): nDCG@10 and R@100 per dataset and scorer, their average, and the cost.

<output>/<dataset>/ is each dataset's run directory (an ordinary `hybridpqa evaluate` run: runs,
index, results/test.json); a dataset whose results are already there is not evaluated again, so
an interrupted benchmark resumes. <output>/benchmark.{md,csv} hold the table.
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import load_results
from HybridPQA.files import safe_filename, write_atomic
from HybridPQA.modeling.pretrained import SavedModel
from HybridPQA.pipeline import evaluate_only
from HybridPQA.retrieval.folder import is_index
from HybridPQA.rundir import RunDir

log = logging.getLogger(__name__)
COLUMNS = ("dataset", "scorer", "documents", "queries", "ndcg@10", "recall@100", "gflops_per_query", "latency_ms_p50",
           "latency_ms_p95", "latency_queries", "encode_seconds", "docs_truncated")


def benchmark_config(saved: SavedModel, config: str | None, overrides: list[str], name: str):
    """The evaluation config of one dataset: the checkpoint's own (or `config`), zero-shot for a masked LM."""
    return saved.config(config, [*overrides, "EXP", safe_filename(name), "RETRIEVER.DO_TRAIN", "False",
                                 "RETRIEVER.DATA.NAME", name, "RETRIEVER.DATA.TEST_DATA_PATH", "qrels/test.tsv",
                                 "RETRIEVER.RERANK.RUN", "None"])


def run_benchmark(model: str, datasets: list[Path], output: Path, config: str | None = None,
                  overrides: list[str] = (), overwrite: bool = False, index: Path | None = None) -> list[dict]:
    """`index`: a saved index of this model (with one dataset), or a folder of them named as the datasets,
    whose documents are ranked in place of encoding the corpus again."""
    saved = SavedModel(model)
    checkpoint = saved.source if saved.is_checkpoint else None
    names = [Path(d).name for d in datasets]
    if len(set(names)) != len(names):
        raise InputError(f"--datasets: two folders share a name ({', '.join(names)}); each names its run directory")
    for folder in datasets:  # every dataset is checked before the first is evaluated
        missing = [n for n in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv") if not (Path(folder) / n).is_file()]
        if missing:
            raise InputError(f"--datasets: {folder} has no {', '.join(missing)}; give BEIR folders (corpus.jsonl, "
                             "queries.jsonl, qrels/test.tsv)")
    indexes = dict.fromkeys(names)
    if index is not None:
        if is_index(index):
            if len(datasets) != 1:
                raise InputError(f"--index={index}: one index serves one dataset; give one --datasets folder, or a "
                                 "folder of indexes named as the datasets")
            indexes[names[0]] = index
        else:
            indexes = {n: index / n if is_index(index / n) else None for n in names}
            if not any(indexes.values()):
                raise InputError(f"--index={index}: neither an index nor a folder of indexes named {', '.join(names)}")
    rows = []
    for folder, name in zip(datasets, names):
        cfg = benchmark_config(saved, config, list(overrides), name)
        run_dir = RunDir.at(output, cfg.EXP)
        if run_dir.finished("test") and not overwrite:
            log.info("%s: results already in %s, reused (--overwrite evaluates again)", name, run_dir)
            results = load_results(run_dir.results_file("test"))
        else:
            run_dir.path.mkdir(parents=True, exist_ok=True)
            with run_dir.lock():
                results = evaluate_only(cfg, run_dir, Path(folder), checkpoint, None, overwrite=True,
                                        index=indexes[name])["test"]
        cost = results.get("efficiency") or {}
        for scorer, metrics in results["metrics"].items():
            rows.append({"dataset": name, "scorer": f"{scorer} (default)" if scorer == results.get("default_scorer")
                         else scorer, "documents": results["documents"],
                         "queries": results["queries_scored"], "ndcg@10": metrics.get("ndcg@10"),
                         "recall@100": metrics.get("recall@100"),
                         "gflops_per_query": (cost.get(scorer) or {}).get("gflops_per_query"),
                         **{k: (cost.get(scorer) or {}).get(k) for k in ("latency_ms_p50", "latency_ms_p95",
                                                                          "latency_queries")},
                         "encode_seconds": (cost.get("corpus") or {}).get("encode_seconds"),
                         "docs_truncated": ((results.get("truncated") or {}).get("context") or [None])[0]})
    rows += _averages(rows, len(datasets))
    write_atomic(output / "benchmark.csv", _csv(rows))
    write_atomic(output / "benchmark.md", markdown(rows, model))
    return rows


def _averages(rows: list[dict], count: int) -> list[dict]:
    """The unweighted mean over datasets, per scorer (every dataset has each scorer)."""
    out = []
    for scorer in dict.fromkeys(r["scorer"] for r in rows):
        mine = [r for r in rows if r["scorer"] == scorer]
        if len(mine) != count:
            continue
        mean = {k: sum(r[k] for r in mine) / count if all(r[k] is not None for r in mine) else None
                for k in COLUMNS[4:]}
        out.append({"dataset": "average", "scorer": scorer, "documents": sum(r["documents"] for r in mine),
                    "queries": sum(r["queries"] for r in mine), **mean})
    return out


def _cell(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def markdown(rows: list[dict], model: str) -> str:
    lines = [f"Model: `{model}`; nDCG@10 and R@100 on each dataset's qrels/test.tsv; average = unweighted mean "
             "over datasets; latency = one query at a time (encode + search + top-k), the scorers interleaved query by "
             "query, p50 and p95 over `latency_queries` queries; docs_truncated = documents cut at the max length.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"
