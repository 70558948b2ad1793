"""`hybridpqa reproduce`: the paper's table, regenerated from configs/paper/<table>/ in one command."""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.paper.report import checks, collect, plot, significance, write_tables
from HybridPQA.paper.rows import PAPER_ROOT, load_table, run_rows


def reproduce(table: str, path_output: str | Path, steps: int | None = None, dry_run: bool = False,
              overwrite: bool = False, root: Path = PAPER_ROOT) -> dict:
    """Run or reuse every row, then write table.{md,csv,tex}, plots/*.png, checks.txt and report.json
    into <path_output>/<table>/ (<table>-steps<N>/ with --steps)."""
    output = Path(path_output) / (table if steps is None else f"{table}-steps{steps}")
    settings, rows = load_table(table, output, steps, root)
    run_rows(rows, output, steps, overwrite, dry_run)
    if dry_run:
        return {}
    values = collect(rows, output)
    sig = significance(rows, output, settings["REFERENCE"], settings["METRICS"], settings.get("PAIRS") or [])
    markdown = write_tables(rows, values, sig, settings, output)
    plots = plot(rows, values, settings, output)
    lines = checks(rows, values, sig, settings, scaled=steps is not None)
    (output / "checks.txt").write_text("\n".join(lines) + "\n")
    report = {"table": table, "steps": steps, "rows": {r.name: r.label for r in rows}, "values": values,
              "significance": sig, "checks": lines}
    (output / "report.json").write_text(json.dumps(report, indent=2))
    print(markdown)
    print("\n".join(["", *[f"wrote {p}" for p in [output / "table.md", output / "table.csv", output / "table.tex",
                                                   *plots]], "", *lines]))
    return report
