"""Quiet by default: what `train`, `export`, `index`, `search` and `evaluate` print on stderr is the
project's own log, no third-party load reports, progress bars or library warnings."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) HybridPQA[\w.]*: ")


def stderr_of(argv: list[str], cwd: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "HybridPQA.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "CI": "true"})
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if line.strip()]


@pytest.mark.slow  # trains, exports, indexes, searches and scores: five processes
def test_five_commands_print_only_the_projects_own_lines(splade_tiny, product_qa, small_beir, tmp_path):
    queries = small_beir / "queries.jsonl"
    trained = [
        ["train", "--output=out", f"--data={product_qa}", f"--config={REPO / 'configs' / 'quickstart.yaml'}", "--env=none",
         "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "SOLVER.TOTAL_TRAIN_STEPS", "2",
         "SOLVER.NUM_STEP_PER_EVAL", "2", "DATA.COUNT", "8", "SOLVER.TRAIN_BATCH_SIZE", "4", "RETRIEVER.COMPUTE_FLOPS", "False",
         "NUM_THREADS", "1"],
        ["export", "--checkpoint=out/quickstart/checkpoints/last", "--output=st"]]
    searched = [
        ["index", f"--model={splade_tiny}", f"--corpus={small_beir / 'corpus.jsonl'}", "--output=ix", "NUM_THREADS", "1"],
        ["search", "--index=ix", f"--queries={queries}", "--output=run.trec", "NUM_THREADS", "1"],
        ["evaluate", "--run=run.trec", f"--qrels={small_beir / 'qrels' / 'test.tsv'}"]]

    def chain(commands: list[list[str]]) -> list[str]:  # each command needs the one before it
        return [f"{argv[0]}: {line}" for argv in commands for line in stderr_of(argv, tmp_path) if not OURS.match(line)]

    with ThreadPoolExecutor(2) as pool:  # the two chains side by side, one thread each (NUM_THREADS 1 where taken)
        foreign = [line for lines in pool.map(chain, (trained, searched)) for line in lines]
    assert not foreign, "\n".join(foreign[:20])
