"""Config loading: shipped YAMLs, the original code's files, merge order, and clear errors."""
from pathlib import Path

import pytest

from HybridPQA.config import load_config
from HybridPQA.errors import InputError

REPO = Path(__file__).resolve().parents[1]
# the original HybridPQA experiment file, verbatim in schema (hybrid.yaml of the paper's code)
ORIGINAL_HYBRID = """EXP: 'hybrid'
DISTRIBUTED: False
RETRIEVER:
  DO_TRAIN: True
  DO_TEST: True
  DATA:
    NORMALIZE: True
    FLATTEN_ATTRIBUTE: True
    NUM_POSITIVE_CONTEXTS: 1
    NUM_TOTAL_CONTEXTS: 5
    INSERT_SOURCE: True
    COUNT: None
  MODEL:
    BIENCODER_TYPE: 'hybrid'
    CROSS_INTERACTION: False
    POOLING: 'cls'
    PROJECTION_DIM: None
    QUESTION_MAX_LENGTH: 128
    CONTEXT_MAX_LENGTH: 128
    TOP_K: 512
  SOLVER:
    LEVEL: 'pooled'
    BROADCAST: 'global'
    FUNC: 'dot'
    TEMPERATURE: 0.5
    TRAIN_BATCH_SIZE: 8
    TEST_BATCH_SIZE: 1
    TEST_CTX_BSZ: 64
    TOTAL_TRAIN_STEPS: 1699
    NUM_STEP_PER_EVAL: 200
    CP_SAVE_LIMIT: 1
    LAMBDA_QUERY: 0.0003
    LAMBDA_CONTEXT: 0.0001
    OPTIMIZER:
      BASE_LR: 1e-5
      GRADIENT_ACCUMULATION_STEPS: 4
      WARMUP_STEPS: 200
"""


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "configs").rglob("*.yaml") if not {"paper", "sweeps"} & set(p.parts)),
                         ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    """Loads, frozen, and holds every value the file sets (nothing dropped or renamed on the way)."""
    import yaml

    cfg = load_config(path, dotenv_path=None)
    assert cfg.is_frozen()

    def leaves(node: dict, prefix=()):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, (*prefix, key))
            elif key != "_BASE_":
                yield (*prefix, key), value

    for keys, value in leaves(yaml.safe_load(path.read_text())):
        got = cfg
        for key in keys:
            got = got[key]
        want = None if value == "None" else tuple(value) if isinstance(value, list) else value
        if isinstance(got, float) and isinstance(want, (int, str)):  # YAML 1.1 reads 1e-5 as a string
            want = float(want)
        assert got == want, (".".join(keys), got, want)


@pytest.mark.parametrize("table", sorted(p.name for p in (REPO / "configs" / "paper").iterdir()))
def test_every_paper_table_loads_with_expectations(table, tmp_path):
    from HybridPQA.paper.rows import load_table

    settings, rows = load_table(table, tmp_path, root=REPO / "configs" / "paper")
    assert [r.name for r in rows] == settings["ROWS"] and all(r.expect and r.cfg.is_frozen() for r in rows)


def test_original_experiment_file_loads_unchanged(tmp_path):
    (tmp_path / "hybrid.yaml").write_text(ORIGINAL_HYBRID)
    cfg = load_config(tmp_path / "hybrid.yaml", dotenv_path=None)
    assert cfg.RETRIEVER.DATA.COUNT is None and cfg.RETRIEVER.MODEL.PROJECTION_DIM is None
    assert cfg.RETRIEVER.SOLVER.OPTIMIZER.BASE_LR == 1e-5 and cfg.RETRIEVER.MODEL.TOP_K == 512


def test_merge_order_yaml_env_cli(tmp_path, monkeypatch):
    base = tmp_path / "base.yaml"
    base.write_text("RETRIEVER:\n  SOLVER:\n    ALPHA: 0.1\n    TEMPERATURE: 2.0\n    TOP_RETRIEVE_COUNT: 7\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("_BASE_: base.yaml\nRETRIEVER:\n  SOLVER:\n    ALPHA: 0.2\n")
    env = tmp_path / ".env"
    env.write_text("HPQA__RETRIEVER__SOLVER__ALPHA=0.3\nHPQA__RETRIEVER__SOLVER__TEMPERATURE=0.7\n")
    cfg = load_config(exp, ["SOLVER.TEMPERATURE", "0.9"], dotenv_path=env)
    assert cfg.RETRIEVER.SOLVER.TOP_RETRIEVE_COUNT == 7  # from the base
    assert cfg.RETRIEVER.SOLVER.ALPHA == 0.3  # .env beats the YAML
    assert cfg.RETRIEVER.SOLVER.TEMPERATURE == 0.9  # the command line beats .env
    monkeypatch.setenv("HPQA__RETRIEVER__SOLVER__ALPHA", "0.4")  # the environment beats the .env file
    assert load_config(exp, dotenv_path=env).RETRIEVER.SOLVER.ALPHA == 0.4


@pytest.mark.parametrize("overrides, message", [
    (["RETRIEVER.SOLVER.ALHPA", "1"], "unknown config key RETRIEVER.SOLVER.ALHPA; did you mean RETRIEVER.SOLVER.ALPHA"),
    (["RETRIEVER.MODEL.AGG", "mean"], "RETRIEVER.MODEL.AGG = 'mean' is not one of max, sum"),
    (["RETRIEVER.SOLVER.BROADCAST", "all"], "is not one of local, global"),
    (["RETRIEVER.SOLVER.TRAIN_BATCH_SIZE", "many"], "TRAIN_BATCH_SIZE must be a int like 8"),
    (["RETRIEVER.SOLVER.TRAIN_BATCH_SIZE", "0"], "TRAIN_BATCH_SIZE = 0 must be an integer >= 1"),
    (["RETRIEVER.SOLVER.ALPHA", "1.5"], "ALPHA = 1.5 must lie in"),
    (["RETRIEVER.MODEL.VOCAB_MASK", "['special', 'emoji']"], "VOCAB_MASK takes a list of special, punctuation"),
    (["FP16", "True", "BF16", "True"], "choose one precision"),
    (["RETRIEVER.SOLVER.LEVEL", "seq"], "late interaction needs both RETRIEVER.MODEL.CROSS_INTERACTION True"),
    (["MODEL.CROSS_INTERACTION", "True", "SOLVER.LEVEL", "seq"], "is a dense model; set BIENCODER_TYPE 'dense'"),
    (["MODEL.BIENCODER_TYPE", "colbert"], "is not one of hybrid, dense, sparse, cross, bm25"),
    (["BM25.B", "1.5"], "RETRIEVER.BM25.B in [0, 1]"),
    (["DISTILL.LOSS", "mse"], "RETRIEVER.DISTILL.LOSS = 'mse' is not one of margin-mse, kl"),
    (["DISTILL.SELF_WEIGHT", "1.0", "BIENCODER_TYPE", "dense"], "SELF_WEIGHT > 0 distils the fused score"),
    (["RETRIEVER.SOLVER.ALPHA"], "has no value"),
    (["DATA.VAL_FROM_TRAIN", "0.1"], "carves the val split from train; set VAL_DATA_PATH None"),
    (["DATA.VAL_FROM_TRAIN", "1.0", "VAL_DATA_PATH", "None"], "VAL_FROM_TRAIN = 1.0 must lie in [0, 1)"),
    (["FUSION.NORM", "l2"], "RETRIEVER.FUSION.NORM = 'l2' is not one of none, min-max, z-score"),
    (["FUSION.RRF_K", "0"], "RETRIEVER.FUSION.RRF_K = 0 must be an integer >= 1"),
    (["INDEX.DENSE", "annoy"], "is not one of torch, faiss, hnsw, hnsw-sq8, ivf-pq"),
])
def test_bad_values_give_one_line_errors(overrides, message):
    with pytest.raises(InputError) as err:
        load_config(None, overrides, dotenv_path=None)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_original_none_device_means_auto(tmp_path):
    (tmp_path / "e.yaml").write_text("DEVICE: None\n")
    from HybridPQA.runtime import build_device

    assert build_device(load_config(tmp_path / "e.yaml", dotenv_path=None)).type in ("cpu", "cuda")


def test_unknown_yaml_key_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("RETRIEVER:\n  MODEL:\n    POOLIN: 'cls'\n")
    with pytest.raises(InputError, match=r"bad.yaml: unknown config key RETRIEVER.MODEL.POOLIN; did you mean"):
        load_config(bad, dotenv_path=None)


def test_broken_yaml_names_the_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("EXP: 'x'\nRETRIEVER:\n  DATA: [unclosed\n")
    with pytest.raises(InputError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(bad, dotenv_path=None)


def test_unknown_env_variable_is_an_error(tmp_path):
    env = tmp_path / ".env"
    env.write_text("HPQA__RETRIEVER__NOPE=1\n")
    with pytest.raises(InputError, match=r"\.env \(HPQA__RETRIEVER__NOPE\): unknown config key RETRIEVER.NOPE"):
        load_config(None, dotenv_path=env)


def test_an_ambiguous_key_suffix_says_so():
    with pytest.raises(InputError, match=r"NAME is ambiguous: it ends \d+ keys \(.*DATA\.NAME"):
        load_config(None, ["NAME", "x"], dotenv_path=None)


def test_a_list_key_takes_a_bare_word_and_errors_name_the_choices():
    assert load_config(None, ["LOG.BACKENDS", "tensorboard"], dotenv_path=None).LOG.BACKENDS == ("tensorboard",)
    assert load_config(None, ["MODEL.VOCAB_MASK", "special"], dotenv_path=None).RETRIEVER.MODEL.VOCAB_MASK == ("special",)
    with pytest.raises(InputError, match="LOG.BACKENDS takes a list of tensorboard, wandb"):
        load_config(None, ["LOG.BACKENDS", "tensorbord"], dotenv_path=None)


def test_a_key_that_defaults_to_none_can_be_set_back_to_none(tmp_path):
    (tmp_path / "e.yaml").write_text("RETRIEVER:\n  DATA:\n    HARD_NEGATIVES_RUN: 'mined/run.trec'\n")
    cfg = load_config(tmp_path / "e.yaml", ["DATA.HARD_NEGATIVES_RUN", "None"], dotenv_path=None)
    assert cfg.RETRIEVER.DATA.HARD_NEGATIVES_RUN is None
    with pytest.raises(InputError, match="RETRIEVER.SOLVER.TEMPERATURE cannot be None"):
        load_config(None, ["SOLVER.TEMPERATURE", "None"], dotenv_path=None)


@pytest.mark.parametrize("argv", [
    ["train", "--output=OUT", "--data=DATA", f"--config={REPO / 'configs' / 'quickstart.yaml'}"],
    ["index", "--model=MODEL", "--corpus=CORPUS", "--output=OUT"],
    ["search", "--index=OUT", "--query=a question"],
    ["evaluate", "--checkpoint=MODEL", "--data=DATA", "--output=OUT"],
    ["serve", "--index=OUT"],
])
def test_a_mistyped_key_is_reported_before_torch_is_imported(argv, tmp_path):
    """A typo costs a second, not the import of torch, transformers and the pipeline."""
    import subprocess
    import sys

    argv = [a.replace("OUT", str(tmp_path / "out")).replace("DATA", str(tmp_path)) for a in argv]
    probe = ("import sys\nfrom HybridPQA.commands import main\n"
             f"try:\n    main({[*argv, 'NOPE.KEY', '1']!r})\nexcept SystemExit as e:\n    code = e.code\n"
             "print('code', code, 'torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "unknown config key NOPE.KEY" in done.stderr
    assert done.stdout.split() == ["code", "2", "False", "False"], done.stdout + done.stderr[-500:]


def test_the_old_name_of_the_store_key_is_still_taken():
    """RETRIEVER.INDEX.ENGINE (where the vectors live) is now STORE: the old key is moved there, and
    the two naming different stores is one line."""
    from HybridPQA.config import load_config

    assert load_config(None, ["RETRIEVER.INDEX.ENGINE", "qdrant"], dotenv_path=None).RETRIEVER.INDEX.STORE == "qdrant"
    with pytest.raises(InputError, match="the old name of STORE"):
        load_config(None, ["RETRIEVER.INDEX.ENGINE", "qdrant", "RETRIEVER.INDEX.STORE", "milvus"], dotenv_path=None)


def test_a_search_settings_file_sets_only_the_index_keys(tmp_path):
    from HybridPQA.config import search_settings

    good = tmp_path / "1m.yaml"
    good.write_text("RETRIEVER:\n  INDEX:\n    SPARSE: pruned\n    QUERY_TERMS: 16\n    PRUNED: {DOC_TERMS: 64}\n")
    pairs = search_settings(good)
    assert pairs == ["RETRIEVER.INDEX.SPARSE", "pruned", "RETRIEVER.INDEX.QUERY_TERMS", "16",
                     "RETRIEVER.INDEX.PRUNED.DOC_TERMS", "64"]
    cfg = load_config(None, pairs, dotenv_path=None)
    assert cfg.RETRIEVER.INDEX.PRUNED.DOC_TERMS == 64 and cfg.RETRIEVER.INDEX.SPARSE == "pruned"
    bad = tmp_path / "bad.yaml"
    bad.write_text("RETRIEVER:\n  INDEX: {SPARSE: pruned}\n  SOLVER: {TOTAL_TRAIN_STEPS: 5}\n")
    with pytest.raises(InputError, match="bad.yaml: RETRIEVER.SOLVER.TOTAL_TRAIN_STEPS: a search-settings file"):
        search_settings(bad)
    for shipped in sorted((REPO / "configs" / "search").glob("*.yaml")):
        load_config(None, search_settings(shipped), dotenv_path=None)  # every shipped file is valid
