"""The house's structure: the import layers hold, and every command parses its own usage."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from HybridPQA.commands import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()", "--config", str(root / ".importlinter"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=120)


def test_the_import_layers_hold():
    done = _lint(REPO)
    assert done.returncode == 0 and "4 kept, 0 broken" in done.stdout, done.stdout[-2000:]


@pytest.mark.parametrize("module, line, broken", [
    ("scoring.py", "from HybridPQA.commands import main", "HybridPQA.scoring is not allowed to import HybridPQA.commands"),
    ("api/search_index.py", "from HybridPQA.evaluation import evaluator",
     "HybridPQA.api is not allowed to import HybridPQA.evaluation"),
    ("retrieval/store.py", "from HybridPQA.retrieval.databases import open_database",
     "HybridPQA.retrieval.store is not allowed to import HybridPQA.retrieval.databases"),
    ("retrieval/databases/qdrant.py", "from HybridPQA.retrieval.databases.milvus import MilvusDatabase",
     "HybridPQA.retrieval.databases.qdrant is not allowed to import HybridPQA.retrieval.databases.milvus")],
    ids=["layers", "inference", "retrieval", "databases"])
def test_each_contract_can_break(tmp_path, module, line, broken):
    """Each contract can fail: one import against it (upward, into training, inside retrieval, between
    database adapters) is reported, and only that contract breaks."""
    shutil.copytree(REPO / "HybridPQA", tmp_path / "HybridPQA", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path)
    with (tmp_path / "HybridPQA" / module).open("a") as handle:
        handle.write(f"\n{line}  # noqa\n")
    done = _lint(tmp_path)
    said = " ".join(done.stdout.split())  # the report wraps long lines
    assert done.returncode != 0 and broken in said and "3 kept, 1 broken" in said, done.stdout[-1500:]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_prints_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert stop.value.code in (0, None)
    usage = out.split("Usage:", 1)[1].split("\n\n", 1)[0]
    assert f"hybridpqa {command} " in usage and not any(f"hybridpqa {c} " in usage for c in COMMANDS if c != command)


def test_missing_or_unknown_flag_is_one_line_and_exit_2(capsys):
    for argv, words in ((["train", "--output=x"], "missing --data=DIR, --config=FILE"),
                        (["fuse", "--runs=a,b", "--output=o", "--bogus=1"], "unknown flag --bogus"),
                        (["evaluate", "--output"], "--output requires argument"),
                        (["nope"], "unknown command 'nope'")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and len(err.splitlines()) == 1 and words in err, err
        assert "docopt" not in err and "unmatched" not in err


def test_version_and_old_flag_spellings(capsys, tmp_path):
    main(["--version"])
    assert capsys.readouterr().out.startswith("HybridPQA")
    main(["train", f"--path_output={tmp_path}", "--path_data=data", f"--path_cfg_exp={REPO / 'configs' / 'quickstart.yaml'}",
          "--print-config", "--env=none", "SOLVER.ALPHA", "0.3"])
    from HybridPQA.config import load_config

    (tmp_path / "printed.yaml").write_text(capsys.readouterr().out)  # the merged config, whole: it loads as itself
    shown = load_config(tmp_path / "printed.yaml", dotenv_path=None)
    assert shown.RETRIEVER.SOLVER.ALPHA == 0.3 and shown.EXP == "quickstart"
    assert shown == load_config(REPO / "configs" / "quickstart.yaml", ["SOLVER.ALPHA", "0.3"], dotenv_path=None)
