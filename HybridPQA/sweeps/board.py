"""What a researcher looks at after a study: leaderboard.{csv,md} from the study itself (every
worker's trials: params, the metric at each report, state, cost, test metrics, paired tests of the
finished trials against the best) and PNG plots (history, importances, metric against steps)."""
from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

from HybridPQA.data import read_split
from HybridPQA.data.trec import read_trec
from HybridPQA.evaluation.significance import ALPHA, judged, paired_tests, per_query
from HybridPQA.sweeps.grid import _value, short_names
from HybridPQA.sweeps.spec import Sweep

log = logging.getLogger(__name__)
ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}


def _key(trial) -> tuple:
    last = trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else float("-inf")
    return ORDER[trial.state.name], -(trial.value if trial.value is not None else last)


def _tests(trials: list, sweep: Sweep, cfg_test: str) -> tuple[dict, int]:
    """{trial number: {metric: Test}} of each finished trial whose test run is on this machine, against the best."""
    runs = {}
    for trial in trials:
        path = Path(trial.user_attrs.get("run_dir", "")) / "runs" / f"test.{trial.user_attrs.get('scorer')}.trec"
        if trial.state.name == "COMPLETE" and path.is_file():
            runs[trial.number] = read_trec(path)
    if len(runs) < 2 or trials[0].number not in runs:
        return {}, len(runs)
    qrels = judged(read_split(sweep.data / cfg_test).qrels)
    scores = per_query(qrels, {str(n): r for n, r in runs.items()}, sweep.metrics)
    best = str(trials[0].number)
    tests = paired_tests(scores, [(str(n), best) for n in runs if str(n) != best], sweep.metrics, "bonferroni")
    return {int(a): by_metric for (a, _), by_metric in tests.items()}, len(runs)


def leaderboard(study, sweep: Sweep, output: Path, test_file: str) -> str:
    """leaderboard.csv and leaderboard.md, best first (complete, then pruned, running, failed)."""
    trials = sorted(study.get_trials(deepcopy=False), key=_key)
    metrics, keys = sweep.metrics, list(sweep.space)
    tests, reachable = _tests(trials, sweep, test_file)
    header = ["rank", "trial", "state", "worker", *short_names(keys).values(), f"dev {metrics[0]}", "reports",
              *[f"test {m}" for m in metrics], *[f"p {m}" for m in metrics], "steps", "seconds", "gflops_per_query"]
    body = []
    for rank, trial in enumerate(trials, 1):
        attrs = trial.user_attrs
        reports = " ".join(f"{step}:{value:.4f}" for step, value in sorted(trial.intermediate_values.items()))
        cells = [str(rank), Path(attrs.get("run_dir", f"trial {trial.number}")).name, trial.state.name.lower(),
                 attrs.get("worker", ""), *[_value(trial.params.get(k)) for k in keys], _value(trial.value), reports]
        cells += [_value(attrs.get("test", {}).get(m)) + ("†" if tests.get(trial.number, {}).get(m) and
                                                           tests[trial.number][m].significant else "") for m in metrics]
        cells += [_value(tests[trial.number][m].p) if trial.number in tests else "" for m in metrics]
        cells += [_value(attrs.get("steps")), _value(attrs.get("seconds")),
                  _value(attrs.get("cost", {}).get("gflops_per_query"))]
        body.append(cells)
    with (output / "leaderboard.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *[[c.rstrip("†") for c in cells] for cells in body]])
    state = {s: sum(t.state.name == s for t in trials) for s in ORDER}
    steps = sum(t.user_attrs.get("steps", 0) for t in trials)
    note = (f"Study {study.study_name}: {state['COMPLETE']} complete, {state['PRUNED']} pruned, {state['FAIL']} failed, "
            f"{state['RUNNING']} running; {steps} training steps in all. Ranked by dev {metrics[0]} of the "
            f"{trials[0].user_attrs.get('scorer', 'model')} scorer (pruned trials by their last report). p: paired "
            f"t-test of each complete trial's test run against the best trial's, Bonferroni over the "
            f"{max(reachable - 1, 0)} complete trials whose runs are on this machine; pruned and failed trials are "
            f"not tested; † p < {ALPHA}.")
    md = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                    *["| " + " | ".join(cells) + " |" for cells in body], "", note])
    (output / "leaderboard.md").write_text(md + "\n")
    return md


def plots(study, sweep: Sweep, output: Path) -> list[Path]:
    """history.png, importances.png (two or more complete trials) and reports.png in output/plots/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ov

    folder = output / "plots"
    folder.mkdir(exist_ok=True)
    written = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's "experimental" notes
        figures = [("history.png", ov.plot_optimization_history)]
        if len(complete) >= 2 and len(sweep.space) >= 2:
            figures.append(("importances.png", ov.plot_param_importances))
        for name, draw in figures:
            try:
                ax = draw(study)
            except (ValueError, RuntimeError) as err:  # e.g. every complete trial has the same params
                log.warning("plot %s skipped: %s", name, err)
                continue
            ax.figure.set_size_inches(7, 4.5)
            ax.figure.tight_layout()
            ax.figure.savefig(folder / name, dpi=110)
            plt.close(ax.figure)
            written.append(folder / name)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for trial in study.get_trials(deepcopy=False):
        if not trial.intermediate_values:
            continue
        steps, values = zip(*sorted(trial.intermediate_values.items()))
        pruned = trial.state.name == "PRUNED"
        ax.plot(steps, values, color="tab:red" if pruned else "tab:blue", alpha=0.6, linestyle="--" if pruned else "-",
                marker="x" if pruned else ".", markevery=[len(steps) - 1] if pruned else None)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"dev {sweep.metrics[0]}")
    ax.set_title(f"{study.study_name}: the metric at each report (red dashed: pruned)", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "reports.png", dpi=110)
    plt.close(fig)
    return [*written, folder / "reports.png"]
