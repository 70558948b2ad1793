"""`hybridpqa sweep`: a grid run (GRID / POINTS, sweeps.grid) or a search that is an Optuna study
(SEARCH + SPACE, sweeps.study): sampled, pruned on the validation metric, shared by any number of
workers through one storage. The file format is in sweeps.spec."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.sweeps.spec import read_sweep

log = logging.getLogger(__name__)


def sweep(path_cfg: str | Path, path_output: str | Path, jobs: int = 1, dry_run: bool = False,
          overwrite: bool = False, storage: str | None = None, study_name: str | None = None,
          grace: int = 120, trials: int | None = None) -> dict:
    """Run the sweep file's grid, or work on its study until the budget is complete or pruned."""
    spec = read_sweep(path_cfg, trials)
    if not spec.search:
        for flag, given in (("--storage", storage), ("--study", study_name)):
            if given:
                raise InputError(f"{flag}={given}: {path_cfg} is a grid run (no SEARCH); {flag} is for a search")
        from HybridPQA.sweeps.grid import run_grid

        return run_grid(path_cfg, path_output, jobs, dry_run, overwrite)
    from HybridPQA.sweeps import board, study as studies
    from HybridPQA.sweeps.process import core_shares

    output = Path(path_output)
    output.mkdir(parents=True, exist_ok=True)
    name = study_name or Path(path_cfg).stem
    url = storage or f"sqlite:///{(output / 'study.db').resolve()}"
    storage, total = studies.open_storage(url, output, grace), studies.budget(spec)
    if dry_run:  # nothing is created
        import optuna

        exists = name in optuna.study.get_all_study_names(storage)
        study = studies.open_study(spec, storage, name, url) if exists else None
        print(f"study {name} in {studies.shown(url)}: {'exists' if exists else 'would be created'}; budget {total} "
              f"trials, {spec.search}")
        for key, distribution in spec.space.items():
            print(f"  {key}: {distribution}")
        trials = studies.counts(study) if study is not None else {}
        print(f"  trials so far: {trials or 'none'}")
        return {"study": name, "budget": total, "trials": trials}
    study = studies.open_study(spec, storage, name, url)
    lock, ran, errors = threading.Lock(), [], []

    def worker(cores):
        try:
            ran.append(studies.work(study, spec, output, cores, lock))
        except Exception as err:  # noqa: BLE001 - raised below, after the leaderboard of what finished
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(share,)) for share in (core_shares(jobs) if jobs > 1 else [None])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    test_file = spec.config({}, "check", str(path_cfg)).RETRIEVER.DATA.TEST_DATA_PATH
    print(board.leaderboard(study, spec, output, test_file))
    written = board.plots(study, spec, output)
    print(f"\nwrote {output / 'leaderboard.md'}, {output / 'leaderboard.csv'} and {', '.join(p.name for p in written)}")
    print(f"browse it: optuna-dashboard {url if not url.startswith('journal:') else url[len('journal:'):]}")
    if errors:
        raise errors[0]
    return {"study": name, "budget": total, "trials": studies.counts(study), "ran": sum(ran)}
