"""End to end with the real splade-tiny on real data: run directory, resume, evaluate, CLI errors."""
import json
from pathlib import Path

import pytest
import torch

from HybridPQA.cli import main
from HybridPQA.config import load_config
from HybridPQA.modeling import build_model
from HybridPQA.pipeline import train_and_test
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import setup_logging
from HybridPQA.errors import InputError

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quickstart.yaml")


def small(model: Path, steps: int = 4) -> list[str]:
    return ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model), "SOLVER.TOTAL_TRAIN_STEPS", str(steps),
            "SOLVER.NUM_STEP_PER_EVAL", "2", "SOLVER.LOG_STEPS", "1", "DATA.COUNT", "24",
            "SOLVER.TRAIN_BATCH_SIZE", "4", "SOLVER.OPTIMIZER.WARMUP_STEPS", "1", "SOLVER.CP_SAVE_LIMIT", "1"]


@pytest.mark.slow  # end to end; `pytest -m 'not slow'` leaves it out
def test_train_writes_a_self_describing_run_directory(tmp_path, splade_tiny, product_qa):
    results = main(["train", f"--output={tmp_path}", f"--data={product_qa}", f"--config={QUICK}",
                    "--env=none", *small(splade_tiny), "RETRIEVER.VISUALIZE", "True"])
    run = tmp_path / "quickstart"
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "checkpoints/last/hybridpqa.json", "checkpoints/last/query/model.safetensors", "checkpoints/best.json",
                 "results/test.json", "results/dev.json"):
        assert (run / name).is_file(), name
    pages = sorted((run / "results" / "test.explain").glob("*.html"))
    assert len(pages) == 5 and "<table>" in pages[0].read_text() and "hybrid =" in pages[0].with_suffix(".txt").read_text()
    for scorer in ("hybrid", "dense", "sparse"):
        assert (run / "runs" / f"test.{scorer}.trec").stat().st_size > 0
    saved = json.loads((run / "results" / "test.json").read_text())
    assert set(saved["metrics"]) == {"hybrid", "dense", "sparse"}
    assert 0.0 < saved["metrics"]["hybrid"]["mrr@5"] <= 1.0 and "r-precision" in saved["metrics"]["sparse"]
    assert saved["queries_without_positive"] > 0 and saved["queries_scored"] + saved["queries_without_positive"] == 24
    eff = saved["efficiency"]
    assert eff["hybrid"]["gflops_per_query"] > eff["dense"]["gflops_per_query"] > 0  # dense skips the MLM head
    assert eff["sparse"]["avg_active_dims_query"] > 0 and eff["sparse"]["expected_flops_per_pair"] > 0
    assert all(eff[s]["latency_ms_p95"] >= eff[s]["latency_ms_p50"] > 0 for s in ("dense", "sparse", "hybrid"))
    assert set(saved["per_source"]["hybrid"]) <= {"attribute", "bullet", "Desc", "OSP", "review", "CQA"}
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [l for l in lines if "split" not in l]
    assert [l["step"] for l in steps] == [1, 2, 3, 4]
    assert {"contrastive_dense", "contrastive_sparse", "flops_q", "flops_d", "lr", "lambda_q", "active_dims_q"} <= set(steps[0])
    assert steps[0]["lambda_q"] == 0.0 < steps[-1]["lambda_q"]  # quadratic warm-up
    assert [l["step"] for l in lines if l.get("split") == "val"] == [2, 4]
    assert len(list((run / "checkpoints").glob("step_*"))) == 1  # CP_SAVE_LIMIT
    from HybridPQA.modeling.encoding import build_encoding
    from HybridPQA.modeling.pretrained import SavedModel

    cfg = load_config(run / "config.yaml", dotenv_path=None)  # the encoding settings travel with the checkpoint
    assert SavedModel(run / "checkpoints" / "last").encoding == build_encoding(cfg)
    assert results["test"]["metrics"] == saved["metrics"]
    # the best checkpoint, evaluated again with its own config, gives the same test metrics
    best = run / "checkpoints" / json.loads((run / "checkpoints" / "best.json").read_text())[0]["path"]
    again = main(["evaluate", f"--output={tmp_path}", f"--data={product_qa}", f"--checkpoint={best}",
                  "--split=test", "--overwrite", "--env=none"])
    assert again["test"]["metrics"] == saved["metrics"]


def test_refuses_non_empty_run_dir(tmp_path, capsys):
    (tmp_path / "quickstart").mkdir()
    (tmp_path / "quickstart" / "old.txt").write_text("x")
    with pytest.raises(SystemExit) as exit_:
        main(["train", f"--output={tmp_path}", f"--data={tmp_path}", f"--config={QUICK}", "--env=none"])
    assert exit_.value.code == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err


def test_print_config_loads_no_model(capsys):
    main(["train", "--output=x", "--data=x", f"--config={QUICK}", "--print-config", "--env=none",
          "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", "/no/such/model"])
    assert "PRETRAINED_MODEL_TYPE: /no/such/model" in capsys.readouterr().out


def test_unreachable_model_is_a_clear_error(tmp_path, product_qa, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", f"--output={tmp_path}", f"--data={product_qa}", f"--config={QUICK}",
              "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", "no-such-org/no-such-model"])
    assert "no-such-org/no-such-model" in capsys.readouterr().err


def _train(tmp_path, name, splade_tiny, product_qa, steps, stop=None, resume=False):
    cfg = load_config(QUICK, small(splade_tiny, steps) + ["EXP", name, "RETRIEVER.DO_TEST", "False"], dotenv_path=None)
    run_dir = RunDir.at(tmp_path, cfg.EXP).prepare(cfg, resume=resume)
    setup_logging(run_dir)
    train_and_test(cfg, run_dir, product_qa, resume=resume, stop_at_step=stop)
    return build_model(cfg, checkpoint=run_dir / "checkpoints" / "last")[0].state_dict()


@pytest.mark.slow  # trains or evaluates end to end
def test_resume_is_exact(tmp_path, splade_tiny, product_qa):
    straight = _train(tmp_path, "straight", splade_tiny, product_qa, steps=6)
    _train(tmp_path, "resumed", splade_tiny, product_qa, steps=6, stop=3)
    resumed = _train(tmp_path, "resumed", splade_tiny, product_qa, steps=6, resume=True)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


@pytest.mark.slow  # trains or evaluates end to end
def test_evaluate_zero_shot_corpus_retrieval_and_checkpoint(tmp_path, splade_tiny, small_beir):
    args = ["evaluate", f"--output={tmp_path}", f"--data={small_beir}", f"--config={QUICK}",
            "--split=test", "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny),
            "RETRIEVER.DATA.NAME", "scifact-slice", "RETRIEVER.MODEL.CONTEXT_MAX_LENGTH", "256"]
    results = main(args)["test"]
    assert results["mode"] == "retrieve" and results["documents"] > 300
    assert results["metrics"]["sparse"]["ndcg@10"] > 0.5  # splade-tiny is a real retriever
    assert "recall@100" in results["metrics"]["hybrid"]
    trec = (tmp_path / "quickstart" / "runs" / "test.sparse.trec").read_text().splitlines()
    assert len(trec) == 40 * 100
    with pytest.raises(SystemExit):  # results exist: not silently overwritten
        main(args)


def test_paper_entry_point_takes_the_same_flags():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "HybridPQA/retriever_trainer.py", "--path_output=x", "--path_data=x",
                          f"--path_cfg_exp={QUICK}", "--print-config", "--env=none", "SOLVER.ALPHA", "0.25"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "EXP: quickstart" in out.stdout and "ALPHA: 0.25" in out.stdout


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = load_config(QUICK, dotenv_path=None)
    run_dir = RunDir.at(tmp_path, cfg.EXP).prepare(cfg)
    run_dir.config.write_text(cfg.dump())
    changed = load_config(QUICK, ["SOLVER.ALPHA", "0.9"], dotenv_path=None)
    with pytest.raises(InputError, match=r"RETRIEVER.SOLVER.ALPHA \(0.5 -> 0.9\)"):
        RunDir.at(tmp_path, changed.EXP).prepare(changed, resume=True)
    assert RunDir.at(tmp_path, cfg.EXP).prepare(cfg, resume=True) == run_dir
    with pytest.raises(InputError, match="nothing to resume"):
        RunDir.at(tmp_path / "other", cfg.EXP).prepare(cfg, resume=True)
