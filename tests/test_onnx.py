"""ONNX export: every kind of checkpoint gives, through ONNX Runtime, the vectors PyTorch gives."""
from __future__ import annotations

import json
import shutil
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from HybridPQA import HybridRetriever
from HybridPQA.cli import main
from HybridPQA.config import load_config
from HybridPQA.errors import InputError
from HybridPQA.modeling import build_checkpointer, build_model
from HybridPQA.modeling.heads import ONNX_VOCAB_TILE
from HybridPQA.modeling.onnx_export import MANIFEST
from HybridPQA.modeling.onnx_runtime import OnnxEncoder
from HybridPQA.modeling.static import init_static_queries

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]
KINDS = {
    "hybrid": ["RETRIEVER.MODEL.TOP_K", "64"],
    "dense": ["RETRIEVER.MODEL.BIENCODER_TYPE", "dense", "RETRIEVER.MODEL.SHARED_ENCODER", "True",
              "RETRIEVER.MODEL.PROJECTION_DIM", "32"],
    "sparse": ["RETRIEVER.MODEL.BIENCODER_TYPE", "sparse", "RETRIEVER.MODEL.SHARED_ENCODER", "True",
               "RETRIEVER.MODEL.TOP_K", "None"],
    "static-query": ["RETRIEVER.MODEL.QUERY_ENCODER", "static"],
    "i3": ["RETRIEVER.MODEL.IMPLICIT_INTERACTION", "True", "RETRIEVER.MODEL.I3.SLOTS", "8"],
}


@pytest.fixture(scope="module")
def texts(small_beir, product_qa) -> dict[str, list[str]]:
    """Real texts of both domains, of many lengths: SciFact questions and abstracts, product-QA ones."""
    queries = [json.loads(line)["text"] for line in (small_beir / "queries.jsonl").read_text().splitlines()[:12]]
    docs = [(d := json.loads(line))["title"] + " " + d["text"]
            for line in (small_beir / "corpus.jsonl").read_text().splitlines()[:12]]
    pqa = json.loads((product_qa / "test.json").read_text())[:6]
    queries += [item["question"] for item in pqa]
    docs += [c["text"] for item in pqa for c in (item["positive_ctxs"] + item["negative_ctxs"])[:2]]
    return {"query": queries, "context": docs}


@pytest.fixture(scope="module")
def checkpoints(splade_tiny, texts, tmp_path_factory) -> dict[str, Path]:
    root, out = tmp_path_factory.mktemp("onnx-ckpts"), {}
    for name, extra in KINDS.items():
        cfg = load_config(REPO / "configs" / "quickstart.yaml", ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny),
                                                                 "PRECISION", "fp32", *extra], dotenv_path=None)
        torch.manual_seed(0)
        model, tokenizer = build_model(cfg)
        with torch.no_grad():  # away from the initial weights, as after training
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        if name == "static-query":
            init_static_queries(model, tokenizer, texts["context"], 64)
        build_checkpointer(cfg, tokenizer).save(model, root / name)
        out[name] = root / name
    return out


@pytest.mark.parametrize("kind", [k if k == "hybrid" else pytest.param(k, marks=pytest.mark.slow) for k in KINDS])
def test_onnx_runtime_gives_pytorchs_vectors(kind, checkpoints, texts, tmp_path):
    out = tmp_path / "onnx"
    main(["export", f"--checkpoint={checkpoints[kind]}", f"--output={out}", "--format=onnx", "--top_k=16"])
    manifest = json.loads((out / MANIFEST).read_text())
    assert (out / "tokenizer.json").is_file()
    shared = manifest["graphs"]["query"]["file"] == manifest["graphs"]["context"]["file"]
    assert shared == (kind == "dense")  # a sparse head: the context graph tiles the vocabulary, the query's does not
    if not shared and "sparse" in manifest["graphs"]["context"]["outputs"]:
        import onnx as onnx_lib

        maxima = {side: sum(n.op_type == "ReduceMax" for n in onnx_lib.load(str(out / g["file"])).graph.node)
                  for side, g in manifest["graphs"].items()}
        vocab = manifest["graphs"]["context"]["dims"]["sparse"]
        assert maxima["context"] >= -(-vocab // ONNX_VOCAB_TILE) > maxima["query"], maxima
    onnx, torch_encoder = OnnxEncoder(out), HybridRetriever.from_pretrained(checkpoints[kind], ["PRECISION", "fp32"]).encoder
    assert onnx.heads == torch_encoder.heads
    for side in ("query", "context"):
        ours = torch_encoder.encode(side, texts[side], batch_size=8)
        theirs = onnx.encode(side, texts[side], batch_size=5)  # other batches: other shapes than the export's
        if "dense" in ours:
            assert (theirs["dense"] - ours["dense"]).abs().max() < 1e-4, side
        if "sparse" in ours:
            assert abs(theirs["sparse"] - ours["sparse"]).max() < 1e-3, side
            batch = onnx.tokenizer(texts[side][:3], padding=True, truncation=True, return_tensors="np",
                                   max_length=onnx.encoding.max_length(side), return_token_type_ids=False)
            short = onnx.run(side, batch["input_ids"], batch["attention_mask"])
            expected = ours["sparse"][:3].toarray()
            for row in range(3):  # the graph's top-k: the 16 largest weights, largest first
                top = np.sort(expected[row])[::-1][:16]
                assert np.allclose(short["sparse_weights"][row], top, atol=1e-3)
                assert np.allclose(expected[row][short["sparse_ids"][row]], short["sparse_weights"][row], atol=1e-3)


def test_onnx_export_errors_are_one_line(checkpoints, tmp_path, capsys):
    for argv, needle in (
            ([f"--checkpoint={checkpoints['dense']}", f"--output={tmp_path / 'a'}", "--top_k=8"], "--top_k is for --format=onnx"),
            ([f"--checkpoint={checkpoints['dense']}", f"--output={tmp_path / 'b'}", "--format=tflite"], "--format=tflite"),
            ([f"--checkpoint={checkpoints['dense']}", f"--output={tmp_path / 'c'}", "--format=onnx", "--top_k=0"], "--top_k=0")):
        with pytest.raises(SystemExit) as stop:
            main(["export", *argv])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    with pytest.raises(Exception, match="no hybridpqa_onnx.json"):
        OnnxEncoder(tmp_path)
    (tmp_path / "corpus.tsv").write_text("d1\tThe charger has a USB-C port.\n")
    with pytest.raises(SystemExit) as stop:  # a checkpoint is not an export
        main(["index", f"--model={checkpoints['dense']}", "--backend=onnx", f"--output={tmp_path / 'i'}",
              f"--corpus={tmp_path / 'corpus.tsv'}"])
    assert stop.value.code == 2 and "export one with `hybridpqa export --format=onnx`" in capsys.readouterr().err


def test_readme_onnx_lines_give_both_vectors(checkpoints, tmp_path, monkeypatch):
    section = (REPO / "README.md").read_text().split("## Your model elsewhere", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(block.strip().splitlines()) <= 5
    retriever = HybridRetriever.from_pretrained(checkpoints["hybrid"], ["PRECISION", "fp32"])
    assert retriever.encoder.text.normalize  # the quickstart's product-QA text options
    retriever.export_onnx(tmp_path / "onnx")
    monkeypatch.chdir(tmp_path)
    text = "The tent sleeps four adults and packs to 5 lbs."  # NORMALIZE rewrites its units
    assert retriever.encoder.text.context(text) != text
    scope: dict = {}
    exec(block.replace('"a text"', repr(text)), scope)  # noqa: S102 - the README's own lines
    ours = retriever.encode_documents([text])  # what search indexes
    assert np.abs(scope["dense"] - ours.dense).max() < 1e-4
    assert np.abs(scope["sparse"] - ours.sparse.toarray()).max() < 1e-3


@pytest.mark.slow
def test_index_and_search_commands_on_an_onnx_export_rank_as_pytorch(checkpoints, small_beir, tmp_path):
    from ranx import Qrels, Run, evaluate

    onnx = tmp_path / "onnx"
    HybridRetriever.from_pretrained(checkpoints["hybrid"]).export_onnx(onnx)
    for name, model in (("torch", checkpoints["hybrid"]), ("onnx", onnx)):
        main(["index", f"--model={model}", f"--corpus={small_beir / 'corpus.jsonl'}", f"--backend={name}",
              f"--output={tmp_path / f'index-{name}'}", "PRECISION", "fp32"])
        main(["search", f"--index={tmp_path / f'index-{name}'}", f"--queries={small_beir / 'queries.jsonl'}",
              f"--output={tmp_path / name}.trec", "--scorer=hybrid"])
    assert json.loads((tmp_path / "index-onnx" / "index.json").read_text())["model"] == str(onnx)
    judged: dict[str, dict[str, int]] = {}
    for line in (small_beir / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, docid, rel = line.split("\t")
        judged.setdefault(qid, {})[docid] = int(rel)
    scores = {name: evaluate(Qrels(judged), Run.from_file(str(tmp_path / f"{name}.trec"), kind="trec"), "ndcg@10")
              for name in ("torch", "onnx")}
    assert abs(scores["torch"] - scores["onnx"]) < 1e-3, scores


def test_int8_export_keeps_the_vectors_close(checkpoints, texts, tmp_path):
    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    retriever = HybridRetriever.from_pretrained(checkpoints["hybrid"])
    retriever.export_onnx(fp32)
    manifest = retriever.export_onnx(int8, int8=True)
    assert manifest["quantization"].startswith("int8")
    assert (int8 / "context.onnx").stat().st_size < 0.6 * (fp32 / "context.onnx").stat().st_size
    a, b = OnnxEncoder(fp32).encode("context", texts["context"]), OnnxEncoder(int8).encode("context", texts["context"])
    cosine = torch.nn.functional.cosine_similarity(a["dense"], b["dense"])
    assert cosine.min() > 0.98, cosine
    sparse = torch.nn.functional.cosine_similarity(torch.from_numpy(a["sparse"].toarray()),
                                                   torch.from_numpy(b["sparse"].toarray()))
    assert sparse.min() > 0.95, sparse


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "onnx"
    HybridRetriever.from_pretrained(checkpoints["hybrid"]).export_onnx(out)
    return out


def _swap_files(folder: Path) -> None:
    (folder / "query.onnx").rename(folder / "tmp.onnx")
    (folder / "context.onnx").rename(folder / "query.onnx")
    (folder / "tmp.onnx").rename(folder / "context.onnx")


def _manifest(change):
    def damage(folder: Path) -> None:
        manifest = json.loads((folder / MANIFEST).read_text())
        change(manifest)
        (folder / MANIFEST).write_text(json.dumps(manifest))
    return damage


def _graph_files(name: str):
    return _manifest(lambda m: [g.update(file=name) for g in m["graphs"].values()])


def _outputs_swapped(m: dict) -> None:
    for graph in m["graphs"].values():
        graph["outputs"][:2] = graph["outputs"][1::-1]


@pytest.mark.parametrize("damage,message", [
    (_swap_files, "not the graph this export wrote (its sha256 differs"),
    (_manifest(_outputs_swapped), "outputs ['dense', 'sparse'"),
    (_graph_files("../outside.onnx"), "is not a graph file inside the export folder"),
    (_graph_files("/etc/passwd"), "is not a graph file inside the export folder"),
    (lambda f: (f / "context.onnx").unlink(), "context.onnx: missing"),
    (_manifest(lambda m: m.pop("encoding")), "no encoding"),
    (_manifest(lambda m: m.pop("digests")), "no digests"),
    (_manifest(lambda m: m.pop("text")), "no text"),
    (lambda f: [p.unlink() for p in f.glob("*token*")], "its tokenizer does not load"),
    (lambda f: (f / MANIFEST).write_text("{not json"), "not readable JSON"),
    (lambda f: (f / "context.onnx").write_bytes((f / "context.onnx").read_bytes()[:4000]), "sha256 differs"),
])
def test_a_damaged_or_swapped_export_is_refused_with_one_line(exported, tmp_path, damage, message):
    folder = tmp_path / "onnx"
    shutil.copytree(exported, folder)
    damage(folder)
    for load in (OnnxEncoder, HybridRetriever.from_pretrained):  # the encoder alone, and through the one loader
        with pytest.raises(InputError) as raised:
            load(folder)
        assert message in str(raised.value) and "\n" not in str(raised.value), load


def test_an_export_refuses_torch_and_changed_text_options(exported, tmp_path, capsys):
    (tmp_path / "corpus.tsv").write_text("d1\tThe tent packs to 5 lbs.\n")
    for extra, needle in ((["--backend=torch"], "an ONNX export (hybridpqa_onnx.json), which has no PyTorch model"),
                          (["RETRIEVER.DATA.NORMALIZE", "False"], "change text options that the export fixes")):
        with pytest.raises(SystemExit):
            main(["index", f"--model={exported}", f"--corpus={tmp_path / 'corpus.tsv'}", f"--output={tmp_path / 'i'}",
                  *extra])
        assert needle in capsys.readouterr().err


@pytest.mark.slow
def test_export_leaves_the_callers_model_as_it_was(checkpoints, tmp_path):
    """export_onnx works on a copy: the caller's model keeps its mode, precision and weights."""
    retriever = HybridRetriever.from_pretrained(checkpoints["hybrid"], ["PRECISION", "fp32"])
    model = retriever.encoder.model.train().to(torch.bfloat16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    retriever.export_onnx(tmp_path / "onnx")
    after = model.state_dict()
    assert model.training and all(v.dtype == torch.bfloat16 for v in after.values() if v.is_floating_point())
    assert all(torch.equal(before[k], after[k]) for k in before)
