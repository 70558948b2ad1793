"""Never delete what is not ours, never trust a saved value, never lose steps to a check that could
run first: output ownership (index, export), saved values checked on load, derived splits checked
before step 1, one input check for the CLI and the API. Real splade-tiny, tiny inputs."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from HybridPQA.api import SearchIndex
from HybridPQA import HybridRetriever
from HybridPQA.cli import main
from HybridPQA.config import load_config
from HybridPQA.errors import InputError
from HybridPQA.modeling import build_checkpointer, build_model
from HybridPQA.scoring import Fusion

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quickstart.yaml")
DOCS = "d1\tthe battery lasts ten hours\nd2\ta wool sweater for winter\nd3\tusb-c charging cable, two metres\n"


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()  # what earlier calls printed
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors  # one error line (a command that ran may have logged before it)
    return errors[0]


@pytest.fixture(scope="module")
def run(splade_tiny, tmp_path_factory) -> Path:
    """A run directory with one saved checkpoint (checkpoints/step_000001), as training leaves it."""
    root = tmp_path_factory.mktemp("run") / "quickstart"
    cfg = load_config(QUICK, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "PRECISION", "fp32",
                              "RETRIEVER.MODEL.TOP_K", "64"], dotenv_path=None)
    model, tokenizer = build_model(cfg)
    with torch.no_grad():  # the two encoders differ, as after training
        for p in model.context_encoder.mlm.bert.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    build_checkpointer(cfg, tokenizer).save(model, root / "checkpoints" / "step_000001")
    (root / "config.yaml").write_text(cfg.dump())
    return root


@pytest.fixture()
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.tsv"
    path.write_text(DOCS)
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_exporting_into_the_run_is_refused_and_the_run_kept(run, capsys):
    before = tree(run)
    checkpoint = run / "checkpoints" / "step_000001"
    for output in (run, checkpoint, checkpoint / "sub"):
        err = one_line_error(["export", f"--checkpoint={checkpoint}", f"--output={output}", "--overwrite"], capsys)
        assert "lies inside the input" in err
    assert tree(run) == before


def test_a_foreign_folder_is_never_replaced_even_with_overwrite(run, corpus, tmp_path, capsys):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.json").write_text('{"title": "my web site"}')  # an index.json that is not ours
    (site / "page.html").write_text("<p>mine</p>")
    before = tree(site)
    checkpoint = run / "checkpoints" / "step_000001"
    for argv in (["index", f"--model={checkpoint}", f"--corpus={corpus}", f"--output={site}", "--overwrite"],
                 ["export", f"--checkpoint={checkpoint}", f"--output={site}", "--overwrite"]):
        assert "not a HybridPQA" in one_line_error(argv, capsys)
    assert tree(site) == before


def test_a_failed_overwrite_keeps_the_old_index_and_a_new_one_replaces_it(run, corpus, tmp_path, capsys, monkeypatch):
    checkpoint, out = run / "checkpoints" / "step_000001", tmp_path / "ix"
    main(["index", f"--model={checkpoint}", f"--corpus={corpus}", f"--output={out}"])
    before = tree(out)
    typo = one_line_error(["index", f"--model={checkpoint}", f"--corpus={tmp_path / 'TYPO.tsv'}", f"--output={out}",
                           "--overwrite"], capsys)
    assert "not found" in typo and tree(out) == before  # read before anything is replaced
    assert "lies inside the input" in one_line_error(
        ["index", f"--model={checkpoint}", f"--corpus={corpus}", f"--output={checkpoint}"], capsys)
    bigger = tmp_path / "bigger.tsv"
    bigger.write_text(DOCS + "d4\ta fourth document\n")
    monkeypatch.chdir(tmp_path)  # a relative --output resolves
    main(["index", f"--model={checkpoint}", f"--corpus={bigger}", "--output=ix", "--overwrite"])
    assert json.loads((out / "index.json").read_text())["documents"] == 4
    assert not (tmp_path / ".ix.building").exists() and not (out / "shards").exists()


def test_export_overwrite_leaves_no_stale_files(run, tmp_path):
    checkpoint, out = run / "checkpoints" / "step_000001", tmp_path / "st"
    main(["export", f"--checkpoint={checkpoint}", f"--output={out}"])
    (out / "dense" / "stale.txt").write_text("from an earlier export")
    main(["export", f"--checkpoint={checkpoint}", f"--output={out}", "--overwrite"])
    assert not (out / "dense" / "stale.txt").exists() and (out / "sparse").is_dir()


def test_swapped_weights_are_refused(run, tmp_path):
    copy = tmp_path / "ck"
    shutil.copytree(run / "checkpoints" / "step_000001", copy)
    HybridRetriever.from_pretrained(copy)  # loads as saved
    query, context = copy / "query" / "model.safetensors", copy / "context" / "model.safetensors"
    data = query.read_bytes()
    query.write_bytes(context.read_bytes())
    context.write_bytes(data)
    with pytest.raises(InputError, match="not the weights this checkpoint was saved with"):
        HybridRetriever.from_pretrained(copy)


def test_saved_values_are_checked_on_load(run, corpus, tmp_path, capsys):
    for bad, message in (({"method": "linear", "norm": "none", "alpha": 1e308, "rrf_k": 60}, "alpha"),
                         ({"method": "magic", "norm": "none", "alpha": 0.5, "rrf_k": 60}, "method"),
                         ({"norm": "none"}, "not a fusion")):
        with pytest.raises(InputError, match=message):
            Fusion.from_dict(bad, "index.json")
    out = tmp_path / "ix"
    main(["index", f"--model={run / 'checkpoints' / 'step_000001'}", f"--corpus={corpus}", f"--output={out}"])
    meta = json.loads((out / "index.json").read_text())
    meta["fusion"]["alpha"] = 1e308
    (out / "index.json").write_text(json.dumps(meta))
    assert "index.json: fusion alpha 1e+308 must lie in [0, 1]" in one_line_error(
        ["search", f"--index={out}", "--query=battery"], capsys)


def test_the_api_checks_what_the_cli_checks(run):
    retriever = HybridRetriever.from_pretrained(run / "checkpoints" / "step_000001")
    with pytest.raises(InputError, match="no document"):
        retriever.score("battery", [])
    index = SearchIndex.build(retriever, {"d1": "battery life", "d2": "wool sweater"})
    with pytest.raises(InputError, match="no query"):
        index.search([])
    for k in (-1, 0, 2.5):
        with pytest.raises(InputError, match="k = "):
            index.search("battery", k=k)
    with pytest.raises(InputError, match="no spaces"):
        SearchIndex.build(retriever, {"doc 1": "battery life"})
    with pytest.raises(InputError, match="not a text"):
        SearchIndex.build(retriever, {"d1": 5})
    assert [d for d, _ in index.search("battery", k=1)] == ["d1"]


def test_a_run_with_no_judged_query_is_refused(tmp_path, capsys):
    (tmp_path / "run.trec").write_text("q9 Q0 d1 1 1.0 x\n")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    err = one_line_error(["evaluate", f"--run={tmp_path / 'run.trec'}", f"--qrels={tmp_path / 'qrels.tsv'}"], capsys)
    assert "none of its 1 queries is among the 1 judged" in err


def test_a_carved_val_split_without_judged_questions_fails_before_any_model_loads(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n"
                                              for i in range(2)))
    err = one_line_error(["train", f"--output={tmp_path / 'out'}", f"--data={data}",
                          f"--config={REPO / 'configs' / 'own_data.yaml'}", "--env=none",
                          "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", "/no/such/model", "RETRIEVER.DATA.VAL_FROM_TRAIN",
                          "0.01"], capsys)
    assert "val split carved from train by" in err and "none with a judged" in err  # not the missing model


def test_the_best_checkpoint_is_never_chosen_on_nan():
    from HybridPQA.engine.schedule import selection_value

    with pytest.raises(InputError, match="cannot be chosen"):
        selection_value({"metrics": {"hybrid": {"ndcg@10": float("nan")}}, "mode": "retrieve"}, "ndcg@10")


def test_concurrent_writers_never_share_a_temporary_file(tmp_path, monkeypatch):
    from HybridPQA.files import write_atomic

    names = []
    real = Path.open

    def spy(self, *args, **kwargs):
        names.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    write_atomic(tmp_path / "stamp", "x")
    assert names == [f"stamp.{os.getpid()}.tmp"]


def test_numbers_and_dicts_never_become_text(tmp_path):
    from HybridPQA.data.pairs import read_pairs_jsonl

    path = tmp_path / "train.jsonl"
    rows = [{"query": "q1", "positive": "p1", "negatives": 5}, {"query": "q2", "positive": {"a": "b"}},
            {"query": 7, "positive": "p3"}, {"query": "q4", "positive": ["p4", 4]}, {"query": "q5", "positive": "p5"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = read_pairs_jsonl(path)
    assert [i.split(": ")[0] for i in data.issues] == [f"{path}:{n}" for n in (1, 2, 3, 4)]
    assert "negatives is a int ('5'), not a text" in data.issues[0]
    assert list(data.queries.values()) == ["q5"] and "5" not in data.docs.values()


def test_wandb_without_a_key_suggests_offline(tmp_path, monkeypatch):
    from HybridPQA.engine.tracking import WandB

    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InputError, match="WANDB_MODE=offline"):
        WandB(tmp_path, load_config(None, ["LOG.BACKENDS", "['wandb']"], dotenv_path=None))


def test_a_second_index_job_on_one_output_is_refused(run, corpus, tmp_path, capsys):
    from HybridPQA.files import hold_lock

    out = tmp_path / "ix"
    with hold_lock(tmp_path / ".ix.lock", "held", "by this test"):  # as a running `index` holds it
        err = one_line_error(["index", f"--model={run / 'checkpoints' / 'step_000001'}", f"--corpus={corpus}",
                              f"--output={out}"], capsys)
    assert f"{out} is being indexed by process {os.getpid()}" in err and not out.exists()


def test_a_failed_start_blocks_no_retry(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    argv = ["train", f"--output={tmp_path / 'out'}", f"--data={data}", f"--config={REPO / 'configs' / 'own_data.yaml'}",
            "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", "/no/such/model"]
    first = one_line_error(argv, capsys)
    assert (tmp_path / "out" / "own_data" / "config.yaml").is_file()  # the failed start left its run folder
    assert one_line_error(argv, capsys) == first  # and the retry meets the same error, not "not empty"


def test_a_split_named_without_its_suffix_takes_the_format_that_is_there(tmp_path):
    from HybridPQA.data import build_split

    data_cfg = load_config(REPO / "configs" / "own_data.yaml", dotenv_path=None).RETRIEVER.DATA
    assert data_cfg.TRAIN_DATA_PATH == "train"
    with pytest.raises(InputError, match=r"no train.jsonl, train.csv, train.tsv, train.json or datasets folder train/"):
        build_split(tmp_path / "train", data_cfg)
    (tmp_path / "train.csv").write_text("query,positive\nhow long does it last?,ten hours\n")
    assert list(build_split(tmp_path / "train", data_cfg).queries.values()) == ["how long does it last?"]
    with pytest.raises(InputError, match="this folder has train.csv: give that name"):
        build_split(tmp_path / "train.jsonl", data_cfg)


def test_an_empty_or_foreign_table_names_what_it_needs(tmp_path):
    from HybridPQA.data import build_split

    data_cfg = load_config(REPO / "configs" / "own_data.yaml", dotenv_path=None).RETRIEVER.DATA
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(InputError, match="empty.tsv: empty file; .* needs a header"):
        build_split(tmp_path / "empty.tsv", data_cfg)
    (tmp_path / "mine.csv").write_text("question\tanswer\nhow long?\tten hours\n")
    with pytest.raises(InputError, match="mine.csv: columns question, answer: not a format .* query and positive"):
        build_split(tmp_path / "mine.csv", data_cfg)


def test_a_mistyped_model_folder_fails_at_once(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # before: a minute of hub retries, then "cannot load its tokenizer"
    err = one_line_error(["index", "--model=modles/splade-tiny", f"--corpus={corpus}", f"--output={tmp_path / 'ix'}"],
                         capsys)
    assert "modles/splade-tiny: no such folder here, and the Hugging Face hub is off" in err
    assert "no such folder; give a checkpoint" in one_line_error(
        ["index", "--model=a/b/c", f"--corpus={corpus}", f"--output={tmp_path / 'ix'}"], capsys)


@pytest.mark.parametrize("names", [("corpus",), ("dense", "sparse"), ("shards",)])
def test_a_folder_is_ours_by_our_marker_only_never_by_the_names_inside(run, corpus, tmp_path, names, capsys):
    """A user's folder holding only corpus/, or dense/ and sparse/ (what our exports hold), is not an
    export of ours: --overwrite never deletes it."""
    checkpoint, mine = run / "checkpoints" / "step_000001", tmp_path / "mine"
    for name in names:
        (mine / name).mkdir(parents=True)
        (mine / name / "notes.txt").write_text("mine")
    before = tree(mine)
    main(["index", f"--model={checkpoint}", f"--corpus={corpus}", f"--output={tmp_path / 'ix'}"])
    for argv in (["export", f"--checkpoint={checkpoint}", f"--output={mine}", "--overwrite"],
                 ["export", f"--index={tmp_path / 'ix' / 'sparse'}", f"--output={mine}", "--overwrite"],
                 ["export", f"--checkpoint={checkpoint}", f"--output={mine}", "--format=onnx", "--overwrite"],
                 ["index", f"--model={checkpoint}", f"--corpus={corpus}", f"--output={mine}", "--overwrite"]):
        assert "not a HybridPQA" in one_line_error(argv, capsys) and tree(mine) == before


def test_messages_name_the_command_s_own_flags_and_kinds(run, corpus, tmp_path, capsys):
    checkpoint = run / "checkpoints" / "step_000001"
    (tmp_path / "afile").write_text("x")
    for argv, kind in ((["index", f"--model={checkpoint}", f"--corpus={corpus}"], "the index"),
                       (["export", f"--checkpoint={checkpoint}"], "the export")):
        err = one_line_error([*argv, f"--output={tmp_path / 'afile' / 'out'}"], capsys)
        assert f"cannot write {kind}" in err and "choose another --output" in err and "path_output" not in err
    main(["export", f"--checkpoint={checkpoint}", f"--output={tmp_path / 'st'}"])
    main(["index", f"--model={checkpoint}", f"--corpus={corpus}", f"--output={tmp_path / 'ix'}"])
    err = one_line_error(["export", f"--index={tmp_path / 'ix' / 'sparse'}", f"--output={tmp_path / 'st'}",
                          "--overwrite"], capsys)
    assert "holds a HybridPQA export, not a pyserini" in err and "no marker" not in err


def test_every_message_of_the_output_rule_says_what_and_what_to_do(tmp_path):
    """Each refusal of `outputs` names the flag, the kind and the way out."""
    from HybridPQA.outputs import BUILDING, claim, mark, staging

    model, ours, theirs, other = tmp_path / "model", tmp_path / "ours", tmp_path / "theirs", tmp_path / "other"
    model.mkdir()
    (tmp_path / "afile").write_text("x")
    mark(ours, "index")
    (ours / "index.json").write_text("{}")
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    mark(other, "export")
    (other / "dense").mkdir()
    (tmp_path / f".busy{BUILDING}").mkdir()
    (tmp_path / f".busy{BUILDING}" / "notes.txt").write_text("mine")
    cases = [(lambda: claim(model / "sub", "index", True, [model]), ["--output=", "lies inside the input",
                                                                     "choose another folder"]),
             (lambda: claim(tmp_path / "afile", "export", True), ["is a file", "give a folder to write the export"]),
             (lambda: claim(theirs, "index", True), ["not a HybridPQA index (no .hybridpqa-output.json)",
                                                     "never replaced, --overwrite or not"]),
             (lambda: claim(other, "pyserini", True), ["holds a HybridPQA export, not a pyserini",
                                                       "never replaced by another kind"]),
             (lambda: claim(ours, "index", False), ["already holds an index", "pass --overwrite"]),
             (lambda: claim(tmp_path / "afile" / "x", "index", True), ["cannot write the index",
                                                                       "choose another --output"]),
             (lambda: staging(tmp_path / "busy", "index"), ["is not a HybridPQA index being built", "move it away"])]
    for call, words in cases:
        with pytest.raises(InputError) as raised:
            call()
        message = str(raised.value)
        assert all(w in message for w in words) and "\n" not in message, message
    assert (theirs / "notes.txt").is_file() and (tmp_path / f".busy{BUILDING}" / "notes.txt").is_file()


def test_a_build_folder_never_exists_without_its_marker(tmp_path, monkeypatch):
    """A kill while the build folder is being made (here: its marker's write fails) leaves no
    unmarked `.NAME.building` that the next run would have to refuse; the next run builds."""
    from HybridPQA import outputs

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "write_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        outputs.staging(tmp_path / "out", "export")
    assert not (tmp_path / ".out.building").exists()
    monkeypatch.undo()
    assert outputs.kind_of(outputs.staging(tmp_path / "out", "export")) == "export"
