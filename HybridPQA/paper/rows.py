"""`hybridpqa reproduce --table=NAME`: run, or reuse when finished, the rows of configs/paper/NAME/.

A row is an experiment YAML (with `_BASE_`) plus a `PAPER` section:

    PAPER:
      ROW: 'Hybrid (ours)'        # label in the table
      SCORER: 'hybrid'            # which of the run's scorers is the row
      DATA: 'data/product-qa'     # --path_data
      AFTER: ['cross']            # rows whose outputs this one reads (run first)
      SCORE_SPLITS: ['train']     # more splits to evaluate with the best checkpoint (teacher runs)
      EXPECT: {mrr@5: [0.80, 0.02]}   # value and tolerance; the OK/FAIL line

"{output}" in any string is the table's output folder, so a row can read another row's runs.
`table.yaml` in the same folder sets the metrics, the reference row and the claims to check.
Each row runs as its own `hybridpqa train` process, in <path_output>/<table>/<EXP>/.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yacs.config import CfgNode

from HybridPQA.config import load_config, read_yaml
from HybridPQA.errors import InputError
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import progress

log = logging.getLogger(__name__)
PAPER_ROOT = Path("configs/paper")


@dataclass
class Row:
    name: str  # EXP, the run directory's name
    label: str
    scorer: str
    path_data: Path
    experiment: dict  # the experiment YAML, PAPER removed and "{output}" resolved
    source: Path
    after: list[str] = field(default_factory=list)
    score_splits: list[str] = field(default_factory=list)
    expect: dict[str, tuple[float, float]] = field(default_factory=dict)
    cfg: CfgNode | None = None  # the merged, validated config (after --steps)
    overrides: list[str] = field(default_factory=list)  # what --steps adds to the row's command line

    def trains(self) -> bool:
        return bool(self.experiment.get("RETRIEVER", {}).get("DO_TRAIN", True))


def _resolve(value, output: Path):
    if isinstance(value, str):
        return value.replace("{output}", str(output))
    if isinstance(value, dict):
        return {k: _resolve(v, output) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, output) for v in value]
    return value


def _row(path: Path, output: Path) -> Row:
    experiment = read_yaml(path)
    paper = experiment.pop("PAPER", None)
    if not isinstance(paper, dict) or not {"ROW", "SCORER", "DATA"} <= set(paper):
        raise InputError(f"{path}: a paper row needs a PAPER section with ROW, SCORER and DATA")
    unknown = set(paper) - {"ROW", "SCORER", "DATA", "AFTER", "SCORE_SPLITS", "EXPECT"}
    if unknown:
        raise InputError(f"{path}: unknown PAPER key(s) {', '.join(sorted(unknown))}; "
                         "use ROW, SCORER, DATA, AFTER, SCORE_SPLITS, EXPECT")
    expect = {}
    for metric, pair in (paper.get("EXPECT") or {}).items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, (int, float)) for x in pair)):
            raise InputError(f"{path}: PAPER.EXPECT.{metric} must be [value, tolerance], got {pair!r}")
        expect[metric] = (float(pair[0]), float(pair[1]))
    if "EXP" not in experiment:
        raise InputError(f"{path}: a paper row must set EXP (its run directory's name)")
    return Row(experiment["EXP"], paper["ROW"], paper["SCORER"], Path(paper["DATA"]),
               _resolve(experiment, output.resolve()),
               path, list(paper.get("AFTER") or []), list(paper.get("SCORE_SPLITS") or []), expect)


QUICK_QUESTIONS = 200  # --steps: the first questions of each split, train and evaluation alike


def steps_overrides(steps: int | None, warmup: int = 0) -> list[str]:
    """--steps N, a quick look at every stage: train N steps, evaluate twice, warm up the optimiser for
    a tenth, the masked-LM warm-up capped at N steps (`warmup`: the row's own), the first
    QUICK_QUESTIONS questions of each split, and no FLOPs or latency measured."""
    if steps is None:
        return []
    return ["SOLVER.TOTAL_TRAIN_STEPS", str(steps), "SOLVER.NUM_STEP_PER_EVAL", str(max(1, steps // 2)),
            "SOLVER.OPTIMIZER.WARMUP_STEPS", str(steps // 10), "SOLVER.REG_WARMUP_STEPS", "None",
            "DISTILL.SELF_START_STEP", "0", "MODEL.MLM_WARMUP.STEPS", str(min(warmup, steps)),
            *quick_evaluation(steps)]


def quick_evaluation(steps: int | None) -> list[str]:
    """--steps for any row, trained or not: the first QUICK_QUESTIONS questions, no cost measured."""
    return [] if steps is None else ["DATA.COUNT", str(QUICK_QUESTIONS), "MEASURE_COST", "False"]


def load_table(table: str, output: Path, steps: int | None = None, root: Path = PAPER_ROOT) -> tuple[dict, list[Row]]:
    """(table settings, rows in table order: table.yaml's ROWS), every row's config merged and validated."""
    folder = root / table
    if not (folder / "table.yaml").is_file():
        known = sorted(p.name for p in root.iterdir() if (p / "table.yaml").is_file()) if root.is_dir() else []
        raise InputError(f"--table={table}: no {folder}/table.yaml; tables: {', '.join(known) or 'none'}")
    settings = yaml.safe_load((folder / "table.yaml").read_text()) or {}
    rows = [_row(p, output) for p in sorted(folder.glob("*.yaml")) if p.name != "table.yaml"]
    by_name = {r.name: r for r in rows}
    if len(by_name) != len(rows):
        raise InputError(f"{folder}: two rows share an EXP name; each row needs its own")
    order = settings.get("ROWS") or list(by_name)
    if sorted(order) != sorted(by_name):
        raise InputError(f"{folder}/table.yaml: ROWS {order} must list each row's EXP once: {', '.join(by_name)}")
    rows = [by_name[name] for name in order]
    if settings.get("REFERENCE") not in by_name:
        raise InputError(f"{folder}/table.yaml: REFERENCE must name a row's EXP ({', '.join(by_name)})")
    for pair in settings.get("PAIRS") or []:  # further paired tests: a variant against its plain counterpart
        if not (isinstance(pair, list) and len(pair) == 2 and all(name in by_name for name in pair)):
            raise InputError(f"{folder}/table.yaml: PAIRS entry {pair!r} must be [ROW, OVER], two rows' EXP names")
    for row in rows:
        config_file = output / "configs" / f"{row.name}.yaml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(row.experiment, sort_keys=False))
        warmup = load_config(config_file, dotenv_path=".env").RETRIEVER.MODEL.MLM_WARMUP.STEPS if steps else 0
        row.overrides = steps_overrides(steps, warmup) if row.trains() else quick_evaluation(steps)
        row.cfg = load_config(config_file, row.overrides, dotenv_path=".env")
    _ordered(rows, folder)  # AFTER names rows and makes no cycle
    return settings, rows


def select_rows(rows: list[Row], settings: dict, names: list[str] | None, folder: Path | str = "") -> list[Row]:
    """--rows: these rows, the rows their PAIRS and CLAIMS compare them with, and the rows they read
    (AFTER), in table order; all rows without `names`."""
    if not names:
        return rows
    by_name = {r.name: r for r in rows}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InputError(f"--rows: {', '.join(unknown)} is not a row of {folder}; its rows: {', '.join(by_name)}")
    wanted = set(names)
    compared = [tuple(pair) for pair in settings.get("PAIRS") or []]
    compared += [(claim.get("ROW"), claim.get("OVER")) for claim in settings.get("CLAIMS") or []]
    for pair in compared:
        if set(pair) & set(names):
            wanted |= {n for n in pair if n in by_name}
    reading = list(wanted)
    while reading:
        for name in by_name[reading.pop()].after:
            if name in by_name and name not in wanted:
                wanted.add(name)
                reading.append(name)
    return [r for r in rows if r.name in wanted]


def _ordered(rows: list[Row], folder: Path | str = "") -> list[Row]:
    """Rows after the rows they read (AFTER), otherwise in file order."""
    by_name, done, order = {r.name: r for r in rows}, set(), []

    def visit(row: Row, path: tuple[str, ...]) -> None:
        if row.name in done:
            return
        if row.name in path:
            raise InputError(f"{row.source}: PAPER.AFTER makes a cycle: {' -> '.join(path + (row.name,))}")
        for name in row.after:
            if name not in by_name:
                raise InputError(f"{row.source}: PAPER.AFTER names {name!r}, not a row of {folder}")
            visit(by_name[name], path + (row.name,))
        done.add(row.name)
        order.append(row)

    for row in rows:
        visit(row, ())
    return order


def _best_checkpoint(run_dir: RunDir) -> Path | None:
    return run_dir.best_checkpoint() if run_dir.checkpoints.is_dir() else None


def same_config(saved: Path, cfg: CfgNode) -> bool:
    """Whether a run's saved config.yaml is `cfg`: compared after loading it onto today's defaults,
    so keys added since the run (with their defaults) do not count as a change."""
    try:
        return saved.is_file() and load_config(saved, dotenv_path=None).dump() == cfg.dump()
    except InputError:
        return False


def commands(row: Row, output: Path, steps: int | None, overwrite: bool) -> list[list[str]]:
    """What running this row takes, given what its run directory already holds (empty: finished)."""
    run_dir = RunDir(output / row.name)
    config_file = output / "configs" / f"{row.name}.yaml"
    base = [sys.executable, "-m", "HybridPQA.cli"]
    common = [f"--path_output={output}", f"--path_data={row.path_data}"]
    todo = []
    saved = run_dir.config
    same = same_config(saved, row.cfg)
    if saved.is_file() and not same and not overwrite:
        raise InputError(f"{run_dir}: ran with another config than {row.source} now gives; pass --overwrite to "
                         "rerun it")
    if not (same and run_dir.finished("test")):
        resume = same and (run_dir.checkpoint("last") / "trainer.pt").is_file()
        todo.append(base + ["train", *common, f"--path_cfg_exp={config_file}",
                            "--resume" if resume else "--overwrite", *row.overrides])
    for split in row.score_splits:
        if same and run_dir.finished(split) and not todo:
            continue
        best = "<best checkpoint>" if todo else _best_checkpoint(run_dir)
        source = [f"--checkpoint={best}"] if row.trains() else [f"--path_cfg_exp={config_file}"]
        todo.append(base + ["evaluate", *common, *source, f"--split={split}", "--overwrite", *quick_evaluation(steps)])
    return todo


def run_rows(rows: list[Row], output: Path, steps: int | None, overwrite: bool, dry_run: bool) -> None:
    ordered = _ordered(rows)
    for number, row in enumerate(progress(ordered, desc="reproduce", unit="row", enabled=not dry_run), 1):
        holder = RunDir(output / row.name).holder()
        if holder is not None:
            print(f"{row.name:<16} skipped: {output / row.name} is in use by process {holder}")
            continue
        try:
            todo = commands(row, output, steps, overwrite)
        except InputError as err:
            if not dry_run:
                raise
            print(f"{row.name:<16} {err}")
            continue
        if dry_run or not todo:
            print(f"{row.name:<16} {'finished, reused' if not todo else 'would run:'}")
            for command in todo:
                print("    " + " ".join(command[1:]))
            continue
        for command in todo:
            if "<best checkpoint>" in " ".join(command):  # known only once training has run
                command = [c.replace("<best checkpoint>", str(_best_checkpoint(RunDir(output / row.name)))) for c in command]
            log.info("row %d/%d %s: %s", number, len(ordered), row.name, " ".join(command[1:]))
            done = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
            if done.returncode != 0:
                raise InputError(f"row {row.name} ({row.source}) failed with exit code {done.returncode}; see "
                                 f"{output / row.name / 'log.txt'}, fix it, and run reproduce again to continue")
