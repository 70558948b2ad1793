"""The paper-style table of `hybridpqa reproduce`: metrics and cost per row, significance against
the reference row (ranx `compare`, paired t-test, Bonferroni-corrected), Markdown / CSV / LaTeX,
PNG plots, and the OK/FAIL checks of each row's expected numbers and of the table's claims.
"""
from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path

from HybridPQA.data import read_split
from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import load_results
from HybridPQA.evaluation.significance import ALPHA, judged, paired_tests, per_query
from HybridPQA.data.trec import read_trec
from HybridPQA.paper.rows import QUICK_QUESTIONS, Row
from HybridPQA.rundir import RunDir

COST = {"gflops_per_query": "GFLOPs/query", "gflops_per_pair": "GFLOPs/pair", "latency_ms_p50": "latency ms"}


def collect(rows: list[Row], output: Path, required: list[Row] | None = None) -> dict[str, dict]:
    """{row: {metric or cost key: value}} from each row's results/test.json; {} for a row outside
    `required` (--rows) that no earlier run left results for: "not run"."""
    table, needed = {}, {r.name for r in (rows if required is None else required)}
    for row in rows:
        path = RunDir(output / row.name).results_file("test")
        if not path.is_file() and row.name not in needed:
            table[row.name] = {}
            continue
        if not path.is_file():
            raise InputError(f"{path}: row {row.name} has no test results; run reproduce without --dry-run")
        results = load_results(path)
        if row.scorer not in results["metrics"]:
            raise InputError(f"{row.source}: PAPER.SCORER {row.scorer!r} is not among this run's scorers "
                             f"({', '.join(results['metrics'])})")
        cost = results.get("efficiency", {}).get(row.scorer, {})
        table[row.name] = {**results["metrics"][row.scorer], **{k: cost.get(k) for k in COST}}
    return table


def significance(rows: list[Row], output: Path, reference: str, metrics: list[str],
                 pairs: list[list[str]] = (), values: dict | None = None) -> dict[str, dict]:
    """{row: {metric: {"p": corrected p-value, "significant": bool}}} against the reference row, and
    {"ROW vs OVER": ...} for each of `pairs` (table.yaml PAIRS); Bonferroni over all those tests.
    Only rows with results take part (`values`: {} for a row not run)."""
    values = values or {r.name: True for r in rows}
    ran = [r for r in rows if values[r.name]]
    ref = next(r for r in rows if r.name == reference)
    qrels = judged(read_split(ref.path_data / ref.cfg.RETRIEVER.DATA.TEST_DATA_PATH).qrels)
    scores = per_query(qrels, {r.name: read_trec(RunDir(output / r.name).run_file("test", r.scorer)) for r in ran},
                       metrics)
    compared = {row.name: (row.name, reference) for row in ran if row.name != reference and values[reference]}
    compared |= {f"{a} vs {b}": (a, b) for a, b in pairs if values[a] and values[b]}
    if not compared:
        return {}
    tests = paired_tests(scores, list(dict.fromkeys(compared.values())), metrics, "bonferroni")
    return {key: {m: {"p": tests[pair][m].p, "significant": tests[pair][m].significant} for m in metrics}
            for key, pair in compared.items()}


def _cell(value, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def write_tables(rows: list[Row], values: dict, sig: dict, settings: dict, output: Path, steps: int | None = None) -> str:
    """table.md, table.csv and table.tex; returns the Markdown."""
    metrics, reference = settings["METRICS"], settings["REFERENCE"]
    header = ["row", *metrics, *COST.values()]
    body = []
    for row in rows:
        cells = [row.label]
        if not values[row.name]:  # --rows left it out and no earlier run has it
            body.append(cells + ["not run"] + [""] * (len(header) - 2))
            continue
        for m in metrics:
            mark = "†" if sig.get(row.name, {}).get(m, {}).get("significant") else ""
            cells.append(_cell(values[row.name].get(m)) + mark)
        cells += [_cell(values[row.name][k], 4 if k != "latency_ms_p50" else 1) for k in COST]
        body.append(cells)
    note = (f"† significantly different from {next(r.label for r in rows if r.name == reference)} (paired t-test, "
            f"Bonferroni over {len(sig)} comparisons, p < {ALPHA}). GFLOPs/pair: online cost per query-candidate "
            "pair (query encoding shared by its candidates, documents encoded ahead; the cross-encoder runs every pair).")
    md = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                   + ["| " + " | ".join(c) + " |" for c in body] + ["", note])
    quick = f" (a quick look: --steps={steps}, the first {QUICK_QUESTIONS} questions of each split)" if steps else ""
    (output / "table.md").write_text(f"## {settings.get('TITLE', '')}{quick}\n\n{md}\n")
    with (output / "table.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header + [f"p_{m}" for m in metrics])
        for row, cells in zip(rows, body):
            writer.writerow([row.label, *[_cell(values[row.name].get(m)) for m in metrics], *cells[1 + len(metrics):],
                             *[_cell(sig.get(row.name, {}).get(m, {}).get("p")) for m in metrics]])
    tex = ["\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
           " & ".join(h.replace("@", "@").replace("_", "\\_") for h in header) + " \\\\", "\\midrule"]
    tex += [" & ".join(c.replace("†", "$^\\dagger$").replace("_", "\\_") for c in cells) + " \\\\" for cells in body]
    tex += ["\\bottomrule", "\\end{tabular}", f"% {note.replace('†', 'dagger:')}"]
    (output / "table.tex").write_text("\n".join(tex) + "\n")
    return md


NOT_PARTS = ("step", "loss", "lr", "lambda_q", "lambda_d", "epoch")  # the other keys of a training record


def _cost_axis(ax, xs: list[float], label: str) -> None:
    """A log cost axis that still shows rows costing 0 (BM25, inference-free queries): symmetric-log,
    linear below the smallest positive cost; plain labels, no colliding minor ticks."""
    import matplotlib.ticker as ticker

    positive = [x for x in xs if x > 0]
    if not xs:
        ax.text(0.5, 0.5, "no row has this cost measured", ha="center", transform=ax.transAxes)
    elif positive and len(positive) == len(xs):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, ...
    else:
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        label += " (0 = no model FLOPs per query)" if 0 in xs else ""
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(label + (" (log)" if positive else ""))


def plot(rows: list[Row], values: dict, settings: dict, output: Path) -> list[Path]:
    """Effectiveness against GFLOPs per query and latency; the training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 - matplotlib.ticker below

    main = settings["METRICS"][0]
    folder = output / "plots"
    folder.mkdir(exist_ok=True)
    written = []
    for key, xlabel in (("gflops_per_query", "GFLOPs per query"), ("latency_ms_p50", "latency p50, ms")):
        points = [(values[r.name][key], values[r.name].get(main), r.label) for r in rows
                  if values[r.name].get(key) is not None and values[r.name].get(main) is not None]
        fig, ax = plt.subplots(figsize=(6, 4))
        for x, y, label in points:
            ax.scatter(x, y)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        _cost_axis(ax, [x for x, _, _ in points], xlabel)
        ax.set_ylabel(main)
        ax.set_title(textwrap.fill(f"{settings.get('TITLE', '')}: {main} against cost", 70), fontsize=9)
        fig.tight_layout()
        written.append(folder / f"{main}_vs_{key}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    fig, (loss_ax, parts_ax, val_ax) = plt.subplots(1, 3, figsize=(16, 4))
    select = None
    for row in rows:
        path = RunDir(output / row.name).metrics
        if not path.is_file():
            continue
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        train = [r for r in lines if "split" not in r]
        val = [r for r in lines if r.get("split") == "val"]
        select = row.cfg.RETRIEVER.SOLVER.SELECT_METRIC
        steps = [r["step"] for r in train]
        loss_ax.plot(steps, [r["loss"] for r in train], label=row.label)
        for part in [k for k in (train[0] if train else {}) if k not in NOT_PARTS and not k.startswith("active")]:
            parts_ax.plot(steps, [r.get(part) for r in train], label=f"{row.label}: {part}")
        key = next((k for k in (f"{row.scorer}/{select}",) if val and k in val[0]), None)
        if key:
            val_ax.plot([r["step"] for r in val], [r[key] for r in val], marker="o", label=row.label)
    losses = [y for line in loss_ax.get_lines() for y in line.get_ydata() if y > 0]
    wide = bool(losses) and max(losses) / min(losses) > 10  # a log axis only where the loss spans a decade
    loss_ax.set(xlabel="step", ylabel="training loss" + (" (log)" if wide else ""), yscale="log" if wide else "linear",
                title="total loss")
    parts_ax.set(xlabel="step", ylabel="loss part", title="loss parts (linear)")
    val_ax.set(xlabel="step", ylabel=f"val {select}", title="validation")
    loss_ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in (loss_ax, parts_ax, val_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(folder / "training_curves.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)
    return written


def checks(rows: list[Row], values: dict, sig: dict, settings: dict, scaled: bool) -> list[str]:
    """One OK/FAIL line per row (its EXPECT numbers) and per claim of table.yaml."""
    lines = []
    for row in rows:
        if not values[row.name]:
            lines.append(f"SKIP {row.name}: not run (--rows)")
            continue
        if scaled:
            lines.append(f"SKIP {row.name}: a quick look (--steps: fewer steps and {QUICK_QUESTIONS} questions per split); "
                         "the expected numbers are for full runs")
            continue
        misses = [f"{m} {values[row.name].get(m, float('nan')):.4f} not within {want} ± {tol}"
                  for m, (want, tol) in row.expect.items() if not abs(values[row.name].get(m, float("nan")) - want) <= tol]
        got = ", ".join(f"{m} {values[row.name].get(m, float('nan')):.4f}" for m in row.expect)
        lines.append(f"{'FAIL' if misses else 'OK'} {row.name}: " + ("; ".join(misses) if misses else got or "no EXPECT"))
    for claim in settings.get("CLAIMS") or []:
        missing = [n for n in (claim["ROW"], claim["OVER"]) if not values.get(n)]
        lines.append(f"SKIP claim {claim}: --steps" if scaled else f"SKIP claim {claim}: {', '.join(missing)} not run"
                     if missing else check_claim(claim, values, sig))
    for a, b in settings.get("PAIRS") or []:
        if not (values[a] and values[b]):
            lines.append(f"SKIP PAIR {a} vs {b}: not run")
            continue
        lines.append(f"PAIR {a} vs {b}: " + ", ".join(
            f"{m} {values[a].get(m, float('nan')):.4f} vs {values[b].get(m, float('nan')):.4f} "
            f"(p = {sig[f'{a} vs {b}'][m]['p']:.3g}{', significant' if sig[f'{a} vs {b}'][m]['significant'] else ''})"
            for m in settings["METRICS"][:2]))
    return lines


def check_claim(claim: dict, values: dict, sig: dict) -> str:
    """better: ROW > OVER on METRIC (and significant); within: OVER - ROW <= MARGIN;
    cheaper: ROW's cost <= (1 - MARGIN) x OVER's."""
    a, b, metric, kind = claim["ROW"], claim["OVER"], claim["METRIC"], claim["KIND"]
    x, y = values[a].get(metric), values[b].get(metric)
    if x is None or y is None:
        return f"FAIL claim {a} {kind} {b} on {metric}: a value is missing"
    if kind == "better":
        # the pair's own test (PAIRS), else the test of whichever of the two is not the reference against it
        test = sig.get(f"{a} vs {b}") or (sig.get(b) if a not in sig else sig.get(a) if b not in sig else None) or {}
        test = test.get(metric, {})
        ok = x > y and test.get("significant", False)
        return (f"{'OK' if ok else 'FAIL'} claim {a} > {b} on {metric}: {x:.4f} vs {y:.4f}, "
                f"p = {test.get('p', float('nan')):.3g} (corrected)")
    if kind == "within":
        ok = y - x <= claim["MARGIN"]
        return f"{'OK' if ok else 'FAIL'} claim {a} within {claim['MARGIN']} of {b} on {metric}: {x:.4f} vs {y:.4f}"
    if kind == "cheaper":
        ok = x <= (1 - claim["MARGIN"]) * y
        return (f"{'OK' if ok else 'FAIL'} claim {a} at least {claim['MARGIN']:.0%} cheaper than {b} in {metric}: "
                f"{x:.4g} vs {y:.4g} ({1 - x / y:.0%} fewer)")
    raise InputError(f"table.yaml: claim KIND {kind!r} is not one of better, within, cheaper")
