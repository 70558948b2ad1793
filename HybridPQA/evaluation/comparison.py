"""Runs side by side on one set of judgements (`hybridpqa compare`): each run's metrics, paired
tests of every run against the first (corrected for the number of runs), per-query wins, ties and
losses, and a plot of the per-query differences; Markdown, CSV and LaTeX.

A run is a TREC run file from any system (ours in <run>/runs/, Pyserini's, trec_eval's input), or
a run directory of ours (its runs/<split>.<scorer>.trec).
"""
from __future__ import annotations

import csv
from pathlib import Path

from HybridPQA.data.trec import read_judgements, read_trec
from HybridPQA.errors import InputError
from HybridPQA.evaluation.significance import ALPHA, judged, paired_tests, per_query
from HybridPQA.rundir import RunDir


def run_file(given: str, split: str, scorer: str | None) -> Path:
    """The TREC file `given` names: itself, or a run directory's runs/<split>.<scorer>.trec."""
    path = Path(given)
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError(f"{given}: no such run file or run directory")
    found = sorted((path / "runs").glob(f"{split}.*.trec")) if RunDir(path).config.is_file() else []
    if scorer is not None:
        found = [f for f in found if f.name == f"{split}.{scorer}.trec"]
    if len(found) != 1:
        have = ", ".join(f.name for f in sorted((path / "runs").glob("*.trec"))) or "none"
        raise InputError(f"{given}: a run directory needs one runs/{split}.{scorer or '<scorer>'}.trec "
                         f"(it has: {have}); name the file, or pass --split / --scorer")
    return found[0]


def names(files: list[Path]) -> list[str]:
    """Short unique labels: the file names, or their paths where two share one."""
    short = [f.parent.parent.name + "/" + f.stem if f.parent.name == "runs" else f.stem for f in files]
    return short if len(set(short)) == len(short) else [str(f) for f in files]


def compare(files: list[Path], qrels_file: str, metrics: list[str], correction: str = "holm") -> dict:
    """{"runs": {name: {metric: mean}}, "tests": {name: {metric: Test}}, "scores": per-query arrays}."""
    if len(files) < 2:
        raise InputError("compare: give at least two runs (the first is the baseline)")
    qrels = judged(read_judgements(qrels_file))
    if not len(qrels.qrels):
        raise InputError(f"--qrels={qrels_file}: no query has a positive judgement")
    labels = names(files)
    runs = {label: read_trec(f) for label, f in zip(labels, files)}
    for label, run in runs.items():
        if not set(run) & set(qrels.qrels):
            raise InputError(f"{label}: none of its queries is judged in {qrels_file}; is it the right qrels?")
    scores = per_query(qrels, runs, metrics)
    tests = paired_tests(scores, [(label, labels[0]) for label in labels[1:]], metrics, correction)
    return {"runs": {label: {m: float(scores[label][m].mean()) for m in metrics} for label in labels},
            "tests": {run: by_metric for (run, _), by_metric in tests.items()}, "scores": scores,
            "baseline": labels[0], "queries": len(qrels.qrels), "correction": correction}


def rows(report: dict, metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """The table: a run per row; each metric's mean, then (against the baseline) p and W/T/L."""
    header = ["run", *[c for m in metrics for c in (m, f"p {m}", f"W/T/L {m}")]]
    body = []
    for label, means in report["runs"].items():
        cells = [label]
        for m in metrics:
            test = report["tests"].get(label, {}).get(m)
            cells += [f"{means[m]:.4f}" + ("†" if test and test.significant else ""),
                      "" if test is None else f"{test.p:.3g}",
                      "" if test is None else f"{test.wins}/{test.ties}/{test.losses}"]
        body.append(cells)
    return header, body


def note(report: dict) -> str:
    correction = {"holm": "Holm-corrected", "bonferroni": "Bonferroni-corrected", "none": "uncorrected"}
    return (f"{report['queries']} judged queries (a query a run lacks scores 0). p: paired two-sided t-test against "
            f"{report['baseline']}, {correction[report['correction']]} over {len(report['tests'])} runs per metric; "
            f"† p < {ALPHA}. W/T/L: queries where the run beats, ties or loses to {report['baseline']}.")


def write(report: dict, metrics: list[str], output: Path) -> list[Path]:
    """compare.md, compare.csv, compare.tex and per_query.png in `output`."""
    header, body = rows(report, metrics)
    md = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                    *["| " + " | ".join(c) + " |" for c in body], "", note(report)])
    (output / "compare.md").write_text(md + "\n")
    with (output / "compare.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *[[c.rstrip("†") for c in cells] for cells in body]])
    escape = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#"})
    tex = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
           " & ".join(h.translate(escape) for h in header) + r" \\", r"\midrule",
           *[" & ".join(c.translate(escape).replace("†", r"$^\dagger$") for c in cells) + r" \\" for cells in body],
           r"\bottomrule", r"\end{tabular}"]
    (output / "compare.tex").write_text("\n".join(tex) + "\n")
    return [output / "compare.md", output / "compare.csv", output / "compare.tex", plot(report, metrics[0], output)]


def plot(report: dict, metric: str, output: Path) -> Path:
    """Per-query differences against the baseline, sorted, one panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = list(report["tests"])
    fig, axes = plt.subplots(len(others), 1, figsize=(7, 2.2 * len(others)), squeeze=False)
    base = report["scores"][report["baseline"]][metric]
    for ax, label in zip(axes[:, 0], others):
        diff = sorted(report["scores"][label][metric] - base, reverse=True)
        ax.bar(range(len(diff)), diff, width=1.0, color=["tab:green" if d > 0 else "tab:red" for d in diff])
        test = report["tests"][label][metric]
        ax.set_title(f"{label} - {report['baseline']}: {metric} per query (W/T/L {test.wins}/{test.ties}/"
                     f"{test.losses}, p {test.p:.3g})", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks([])
    fig.tight_layout()
    path = output / "per_query.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
