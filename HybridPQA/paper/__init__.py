"""`hybridpqa reproduce`: the paper's table, regenerated from configs/paper/<table>/ in one command."""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.paper.report import checks, collect, plot, significance, write_tables
from HybridPQA.paper.rows import PAPER_ROOT, load_table, run_rows, select_rows


def reproduce(table: str, path_output: str | Path, steps: int | None = None, dry_run: bool = False,
              overwrite: bool = False, root: Path = PAPER_ROOT, rows: list[str] | None = None) -> dict:
    """Run or reuse every row (`rows`: only these and the rows they are compared with), then write
    table.{md,csv,tex}, plots/*.png, checks.txt and report.json into <path_output>/<table>/
    (<table>-steps<N>/ with --steps); a row not run and not found from an earlier run is "not run"."""
    output = Path(path_output) / (table if steps is None else f"{table}-steps{steps}")
    settings, every = load_table(table, output, steps, root)
    chosen = select_rows(every, settings, rows, root / table)
    run_rows(chosen, output, steps, overwrite, dry_run)
    if dry_run:
        return {}
    values = collect(every, output, required=chosen)
    sig = significance(every, output, settings["REFERENCE"], settings["METRICS"], settings.get("PAIRS") or [], values)
    markdown = write_tables(every, values, sig, settings, output, steps)
    plots = plot(every, values, settings, output)
    lines = checks(every, values, sig, settings, scaled=steps is not None)
    (output / "checks.txt").write_text("\n".join(lines) + "\n")
    report = {"table": table, "steps": steps, "rows": {r.name: r.label for r in every},
              "run": [r.name for r in chosen], "values": values, "significance": sig, "checks": lines}
    (output / "report.json").write_text(json.dumps(report, indent=2))
    print(markdown)
    print("\n".join(["", *[f"wrote {p}" for p in [output / "table.md", output / "table.csv", output / "table.tex",
                                                   *plots]], "", *lines]))
    return report
