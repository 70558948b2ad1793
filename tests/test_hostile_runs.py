"""Hostile runs (issue 13, defects 1-5, 10, 12, 13): run directories stay inside --output,
files never run code, one process per run directory, an evaluation is published whole or not at
all, ids never choose file names, every bad output path is a one-line error before the work."""
from __future__ import annotations

import json
import pathlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from HybridPQA.cli import main
from HybridPQA.data import build_split
from HybridPQA.evaluation.explain import write_explanations
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling import build_model
from HybridPQA.modeling.encoding import build_encoding
from HybridPQA.scoring import build_fusion
from HybridPQA.config import load_config
from HybridPQA.engine import checkpoint as ckpt
from HybridPQA import pipeline
from HybridPQA.rundir import RunDir
from HybridPQA.errors import InputError
from HybridPQA.evaluation.evaluator import load_results
from HybridPQA.evaluation.metrics import score_run
from HybridPQA.data.trec import read_qrels, read_trec
from HybridPQA.files import safe_filename
from HybridPQA.retrieval.index import DenseIndex, SparseIndex
from HybridPQA.sweeps.grid import _run_point

REPO = Path(__file__).resolve().parents[1]
ZERO_SHOT = str(REPO / "configs" / "zero_shot_scifact.yaml")
QUICK = str(REPO / "configs" / "quickstart.yaml")


def error_of(argv: list[str], capsys) -> str:
    """The one-line error `hybridpqa ARGV` exits 2 with."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ")
    return err


@pytest.fixture(scope="module")
def tiny_beir(small_beir, tmp_path_factory) -> Path:
    """5 SciFact test queries, their positives and 25 other abstracts."""
    out = tmp_path_factory.mktemp("tiny-beir")
    qrels = [l.split("\t") for l in (small_beir / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    qids = list(dict.fromkeys(q for q, _, _ in qrels))[:5]
    keep = {d for q, d, _ in qrels if q in qids}
    lines = (small_beir / "corpus.jsonl").read_text().splitlines()
    others = [l for l in lines if json.loads(l)["_id"] not in keep][:25]
    (out / "corpus.jsonl").write_text("\n".join([l for l in lines if json.loads(l)["_id"] in keep] + others) + "\n")
    queries = [l for l in (small_beir / "queries.jsonl").read_text().splitlines() if json.loads(l)["_id"] in qids]
    (out / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (out / "qrels").mkdir()
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        "\t".join(r) + "\n" for r in qrels if r[0] in qids))
    return out


def evaluate_argv(out: Path, data: Path, model: Path, *extra: str) -> list[str]:
    return ["evaluate", f"--output={out}", f"--data={data}", f"--config={ZERO_SHOT}", "--split=test",
            "--env=none", "--overwrite", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model),
            "RETRIEVER.COMPUTE_FLOPS", "False", "NUM_THREADS", "1", *extra]


# 1. EXP is one folder name; --overwrite removes only a HybridPQA run ---------------------------------

@pytest.mark.parametrize("exp", ["..", "", "/tmp/x", "a/b", ".hidden", "x" * 300, "-rf", "a b"])
def test_exp_must_be_one_safe_folder_name(exp):
    with pytest.raises(InputError, match="must be one folder name"):
        load_config(None, ["EXP", repr(exp)], dotenv_path=None)


def test_overwrite_never_leaves_the_run_directory(tmp_path):
    out = tmp_path / "out"
    (out / "run").mkdir(parents=True)
    (out / "run" / "config.yaml").write_text("EXP: run\n")
    (out / "run" / "checkpoints").mkdir()
    (out / "sibling").mkdir()
    (out / "sibling" / "keep.txt").write_text("mine")
    (tmp_path / "beside.txt").write_text("mine")
    cfg = load_config(None, ["EXP", "run"], dotenv_path=None)
    run_dir = RunDir.at(out, cfg.EXP).prepare(cfg, overwrite=True)
    assert run_dir.path == out / "run" and run_dir.path.is_dir() and not any(run_dir.path.iterdir())
    assert (out / "sibling" / "keep.txt").read_text() == "mine" and (tmp_path / "beside.txt").is_file()


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    cfg = load_config(None, ["EXP", "photos"], dotenv_path=None)
    with pytest.raises(InputError, match="replaces HybridPQA runs only"):
        RunDir.at(tmp_path, cfg.EXP).prepare(cfg, overwrite=True)
    assert (tmp_path / "photos" / "holiday.jpg").is_file()


def test_checkpoint_config_cannot_send_writes_outside(tmp_path, capsys):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.yaml").write_text("EXP: ../../../escaped\n")
    (checkpoint / "model.pt").write_bytes(b"")
    err = error_of(["evaluate", f"--output={tmp_path / 'out'}", f"--data={tmp_path}",
                    f"--checkpoint={checkpoint}", "--env=none"], capsys)
    assert "EXP = '../../../escaped' must be one folder name" in err
    assert not list(tmp_path.parent.parent.glob("escaped*"))


# 2. Files never run code ------------------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_planted_trainer_pickle_is_refused_not_run(tmp_path, capsys, splade_tiny, product_qa):
    marker = tmp_path / "pwned.txt"
    last = tmp_path / "out" / "quickstart" / "checkpoints" / "last"
    last.mkdir(parents=True)
    torch.save({"optimizer": _Payload(marker)}, last / "trainer.pt")
    with pytest.raises(InputError, match="refused: it holds Python objects"):
        ckpt.load_last(tmp_path / "out" / "quickstart")
    assert not marker.exists()
    cfg = load_config(QUICK, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny)], dotenv_path=None)
    (last.parent.parent / "config.yaml").write_text(cfg.dump())
    err = error_of(["train", f"--output={tmp_path / 'out'}", f"--data={product_qa}", f"--config={QUICK}",
                    "--resume", "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny)], capsys)
    assert "trainer.pt: refused: it holds Python objects" in err
    assert not marker.exists()


def test_rng_state_round_trips_through_weights_only(tmp_path):
    import random

    state = ckpt.rng_state()
    torch.save({"rng": state}, tmp_path / "t.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(torch.load(tmp_path / "t.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


# 3. One process per run directory ---------------------------------------------------------------------

def test_a_locked_run_directory_is_refused_and_skipped(tmp_path, capsys, splade_tiny, product_qa):
    run_dir = RunDir(tmp_path / "quickstart")
    with run_dir.lock():
        import os

        assert run_dir.holder() == str(os.getpid())
        err = error_of(["train", f"--output={tmp_path}", f"--data={product_qa}", f"--config={QUICK}",
                        "--overwrite", "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny)], capsys)
        assert f"is in use by process {os.getpid()}" in err
        row = type("Row", (), {"name": "quickstart"})()
        assert "skipped" in _run_point(row, tmp_path, overwrite=False)
    assert run_dir.holder() is None  # released on exit (and by the OS if the process dies)


# 4. An evaluation is published whole: crash at every write ------------------------------------------

class Crash(BaseException):
    """Stands for kill -9: nothing of ours catches it."""


def _consistent(run_dir: Path, qrels: dict, complete_indexes: list[int]) -> None:
    results_file = run_dir / "results" / "test.json"
    if results_file.is_file():
        results = load_results(results_file)  # every run file is the one these results scored
        for scorer, metrics in results["metrics"].items():
            again = score_run(read_trec(run_dir / "runs" / f"test.{scorer}.trec"), qrels, list(metrics))
            assert again == pytest.approx(metrics)
    for folder in (run_dir / "index" / "test", run_dir / "index" / "test.old"):
        if (folder / "sparse" / "meta.json").is_file():
            assert SparseIndex.load(folder / "sparse").by_term.nnz in complete_indexes  # never a mix of two
            DenseIndex.load(folder / "dense")


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_a_crash_at_any_write_leaves_a_consistent_evaluation(tmp_path, splade_tiny, tiny_beir, monkeypatch):
    out = tmp_path / "out"
    run_dir = out / "zero_shot_scifact"
    qrels = read_qrels(tiny_beir / "qrels" / "test.tsv")
    other = ("RETRIEVER.MODEL.TOP_K", "5", "RETRIEVER.SOLVER.ALPHA", "0.9")  # another model: other runs and index
    main(evaluate_argv(out, tiny_beir, splade_tiny, *other))
    nnz_b = SparseIndex.load(run_dir / "index" / "test" / "sparse").by_term.nnz
    main(evaluate_argv(out, tiny_beir, splade_tiny))
    nnz_a = SparseIndex.load(run_dir / "index" / "test" / "sparse").by_term.nnz
    assert nnz_a != nnz_b
    calls = {"n": 0, "at": None}
    originals = {"replace": pathlib.Path.replace, "rename": pathlib.Path.rename, "save": np.save}

    def counted(name):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == calls["at"]:
                raise Crash(name)
            return originals[name](*args, **kwargs)
        return wrapper

    monkeypatch.setattr(pathlib.Path, "replace", counted("replace"))
    monkeypatch.setattr(pathlib.Path, "rename", counted("rename"))
    monkeypatch.setattr(np, "save", counted("save"))
    main(evaluate_argv(out, tiny_beir, splade_tiny, *other))  # count the writes of one evaluation
    writes = calls["n"]
    assert writes >= 8
    for at in range(1, writes + 1):
        main(evaluate_argv(out, tiny_beir, splade_tiny, *(other if at % 2 else ())))  # the other model's set
        calls.update(n=0, at=at)
        with pytest.raises(Crash):
            main(evaluate_argv(out, tiny_beir, splade_tiny, *(() if at % 2 else other)))
        _consistent(run_dir, qrels, [nnz_a, nnz_b])
    calls.update(n=0, at=None)
    main(evaluate_argv(out, tiny_beir, splade_tiny))  # and a rerun completes the set
    _consistent(run_dir, qrels, [nnz_a])
    assert (run_dir / "results" / "test.json").is_file()


def test_full_disk_during_evaluate_is_one_line_and_keeps_the_old_index(tmp_path, capsys, splade_tiny, tiny_beir,
                                                                        monkeypatch):
    import errno

    out = tmp_path / "out"
    main(evaluate_argv(out, tiny_beir, splade_tiny))
    index = out / "zero_shot_scifact" / "index" / "test" / "sparse"
    terms = (index / "terms.json").read_text()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    err = error_of(evaluate_argv(out, tiny_beir, splade_tiny), capsys)
    assert "the disk is full" in err
    assert (index / "terms.json").read_text() == terms and SparseIndex.load(index).terms is not None


# 5. Ids never choose where a file goes ------------------------------------------------------------------

def test_hostile_qids_are_written_inside_the_run_directory(tmp_path, splade_tiny, tiny_beir):
    data = tmp_path / "beir"
    shutil.copytree(tiny_beir, data)
    qids = list(read_qrels(data / "qrels" / "test.tsv"))
    hostile = {qids[0]: "../../../../escaped_q", qids[1]: "sub/dir"}
    for name in ("queries.jsonl", "qrels/test.tsv"):
        text = (data / name).read_text()
        for old, new in hostile.items():
            text = text.replace(f'"_id": "{old}"', f'"_id": "{new}"').replace(f"\n{old}\t", f"\n{new}\t")
        (data / name).write_text(text)
    out = tmp_path / "out"
    main(evaluate_argv(out, data, splade_tiny))
    run_dir = out / "zero_shot_scifact"
    cfg = load_config(run_dir / "config.yaml", dotenv_path=None)
    model, tokenizer = build_model(cfg)
    runs = {sc: read_trec(run_dir / "runs" / f"test.{sc}.trec") for sc in ("hybrid", "dense", "sparse")}
    folder = run_dir / "results" / "test.explain"
    write_explanations(Encoder(model, tokenizer, build_encoding(cfg), torch.device("cpu")),
                       build_split(data / "qrels" / "test.tsv", cfg.RETRIEVER.DATA), runs, build_fusion(cfg), folder)
    assert not list(tmp_path.rglob("escaped_q*"))
    assert len(list(folder.glob("*.html"))) == 5 and {p.parent for p in tmp_path.rglob("*.html")} == {folder}
    assert safe_filename("../../../../escaped_q").startswith("id-") and safe_filename("q12") == "q12"


# 10. Bad output paths fail first, in one line ------------------------------------------------------------

def test_evaluate_under_a_file_is_one_line(tmp_path, capsys, splade_tiny, tiny_beir):
    (tmp_path / "file").write_text("x")
    err = error_of(evaluate_argv(tmp_path / "file" / "out", tiny_beir, splade_tiny), capsys)
    assert "cannot write the run directory" in err


def test_outputs_that_are_directories_or_damaged_inputs(tmp_path, capsys, splade_tiny, tiny_beir):
    out = tmp_path / "out"
    main(evaluate_argv(out, tiny_beir, splade_tiny))
    run_dir = out / "zero_shot_scifact"
    runs = f"{run_dir}/runs/test.dense.trec,{run_dir}/runs/test.sparse.trec"
    assert "is a directory" in error_of(["fuse", f"--runs={runs}", f"--output={tmp_path}"], capsys)
    assert "is a directory" in error_of(["mine", f"--run={run_dir}/runs/test.sparse.trec", f"--data={tiny_beir}",
                                         "--split=test", f"--output={tmp_path}"], capsys)
    (tmp_path / "afile").write_text("x")
    assert "is a file" in error_of(["export", f"--index={run_dir}/index/test/sparse",
                                    f"--output={tmp_path / 'afile'}"], capsys)
    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir / "index" / "test" / "sparse", damaged)
    (damaged / "indices.npy").write_bytes(b"\x93NUMPY garbage")
    assert "unreadable index array" in error_of(["export", f"--index={damaged}", f"--output={tmp_path / 'e'}"], capsys)
    np.save(damaged / "indices.npy", np.zeros(3, dtype=np.int32))
    assert "index is damaged" in error_of(["export", f"--index={damaged}", f"--output={tmp_path / 'e'}"], capsys)
    bare = tmp_path / "bare-checkpoint"
    bare.mkdir()
    (bare / "model.pt").write_bytes(b"")
    err = error_of(["evaluate", f"--output={tmp_path / 'o2'}", f"--data={tiny_beir}", f"--checkpoint={bare}",
                    f"--config={ZERO_SHOT}", "--split=test", "--env=none"], capsys)
    assert "no config.yaml" in err


# 12. What can be known before the first step is checked before it --------------------------------------

def test_select_metric_the_val_split_lacks_fails_before_training(tmp_path, capsys, splade_tiny, product_qa):
    err = error_of(["train", f"--output={tmp_path}", f"--data={product_qa}", f"--config={QUICK}",
                    "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny),
                    "SOLVER.SELECT_METRIC", "recall@100", "DATA.COUNT", "8"], capsys)
    assert "SELECT_METRIC = 'recall@100' is not computed on the val split" in err
    assert not (tmp_path / "quickstart" / "metrics.jsonl").exists()


# 13. Ctrl-C is one line that says how to continue --------------------------------------------------------

def test_ctrl_c_is_one_line(tmp_path, capsys, splade_tiny, product_qa, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_and_test", interrupted)
    with pytest.raises(SystemExit) as stop:
        main(["train", f"--output={tmp_path}", f"--data={product_qa}", f"--config={QUICK}",
              "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny)])
    assert stop.value.code == 130
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "".join(lines) and "--resume" in lines[-1]
