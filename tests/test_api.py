"""Your model out, your data in: Hugging Face checkpoints, sentence-transformers export, the Python
API, index + search of any corpus, and its bad inputs. Real splade-tiny and real SciFact text."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from HybridPQA.api import SearchIndex
from HybridPQA import HybridRetriever
from HybridPQA.cli import main
from HybridPQA.config import load_config
from HybridPQA.data.text import TextOptions
from HybridPQA.errors import InputError
from HybridPQA.modeling.encode import encode
from HybridPQA.modeling import build_checkpointer, build_model
from HybridPQA.modeling.st_export import export_sentence_transformers

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "configs" / "quickstart.yaml")
ZERO_SHOT = str(REPO / "configs" / "zero_shot_scifact.yaml")
TEXTS = ["Vitamin D deficiency is associated with an increased risk of multiple sclerosis.",
         "BRCA1 mutations raise the lifetime risk of breast and ovarian cancer.",
         "αvβ8 integrin activates latent TGF-β in effector regulatory T cells."]


def error_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def checkpoints(splade_tiny, tmp_path_factory) -> dict[str, Path]:
    """Saved checkpoints of a hybrid (two encoders) and of a projected dense model (shared encoder)."""
    root = tmp_path_factory.mktemp("ckpts")
    out = {}
    for name, extra in {"hybrid": [], "dense": ["RETRIEVER.MODEL.BIENCODER_TYPE", "dense", "RETRIEVER.MODEL.SHARED_ENCODER",
                                                 "True", "RETRIEVER.MODEL.PROJECTION_DIM", "32"]}.items():
        cfg = load_config(QUICK, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "PRECISION", "fp32",
                                  "RETRIEVER.MODEL.TOP_K", "64", *extra], dotenv_path=None)
        torch.manual_seed(0)
        model, tokenizer = build_model(cfg)
        with torch.no_grad():  # make the two encoders differ, as after training
            for p in (model.context_encoder or model.query_encoder).mlm.bert.encoder.parameters():
                p.add_(0.01 * torch.randn_like(p))
        build_checkpointer(cfg, tokenizer).save(model, root / name)
        out[name] = root / name
    return out


def test_checkpoint_is_a_transformers_folder_and_reloads_exactly(checkpoints):
    path = checkpoints["hybrid"]
    assert {"query", "context", "hybridpqa.json", "encoding.json", "config.yaml", "README.md"} <= {p.name for p in path.iterdir()}
    assert (path / "query" / "model.safetensors").is_file() and not (path / "model.pt").exists()
    cfg = load_config(path / "config.yaml", dotenv_path=None)
    model, _ = build_model(cfg, checkpoint=path)
    for side, encoder in (("query", model.query_encoder), ("context", model.context_encoder)):
        plain = AutoModelForMaskedLM.from_pretrained(path / side)
        AutoTokenizer.from_pretrained(path / side)
        ours = encoder.mlm.state_dict()
        assert all(torch.equal(v, ours[k]) for k, v in plain.state_dict().items()), side
    assert not torch.equal(model.query_encoder.mlm.bert.encoder.layer[0].output.dense.weight,
                           model.context_encoder.mlm.bert.encoder.layer[0].output.dense.weight)
    dense = checkpoints["dense"]
    assert (dense / "heads.safetensors").is_file() and not (dense / "context").exists()
    reloaded, _ = build_model(load_config(dense / "config.yaml", dotenv_path=None), checkpoint=dense)
    assert reloaded.query_encoder.dense_head.projection.weight.shape == (32, 128)

def test_model_card_has_hub_metadata_and_a_snippet_that_runs(checkpoints, capsys):
    from HybridPQA.modeling.card import check_card

    card = check_card(checkpoints["hybrid"])  # what the hub reads: the metadata, then the text
    assert (card.data.library_name, card.data.pipeline_tag, card.data.base_model, card.data.license) == \
        ("hybridpqa", "feature-extraction", "rasyosef/splade-tiny", "apache-2.0")
    assert "biplob1ly" not in card.text and '"PATH"' not in card.text and "latency" not in card.text
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    capsys.readouterr()
    exec(compile(snippet, "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("[('d1', ")  # the usb question finds the usb document


def test_old_model_pt_checkpoints_still_load(checkpoints, tmp_path):
    path = checkpoints["hybrid"]
    cfg = load_config(path / "config.yaml", dotenv_path=None)
    model, tokenizer = build_model(cfg, checkpoint=path)
    old = tmp_path / "old"  # the format before this one: model.pt, backbone/ (config only), tokenizer/
    model.backbone_config.save_pretrained(old / "backbone")
    tokenizer.save_pretrained(old / "tokenizer")
    shutil.copy(path / "config.yaml", old / "config.yaml")
    torch.save(model.state_dict(), old / "model.pt")
    again, _ = build_model(cfg, checkpoint=old)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_sentence_transformers_vectors_equal_ours(checkpoints, tmp_path):
    from sentence_transformers import SentenceTransformer, SparseEncoder

    for name, path in checkpoints.items():
        retriever = HybridRetriever.from_pretrained(path)
        out = tmp_path / name
        folders = export_sentence_transformers(retriever.encoder, out)
        assert folders == (["sparse", "dense"] if name == "hybrid" else ["dense"])  # one folder per head, routed
        e = retriever.encoder  # unnormalised, as sentence-transformers' encode gives them
        ours = {side: encode(e.model, e.tokenizer, side, TEXTS, e.encoding.max_length(side), 8, e.device)
                for side in ("query", "context")}
        if "sparse" in folders:
            sparse = SparseEncoder(str(out / "sparse"))
            for side, theirs in (("query", sparse.encode_query), ("context", sparse.encode_document)):
                got = theirs(TEXTS, convert_to_tensor=True).to_dense().numpy()
                assert np.abs(got - ours[side]["sparse"].toarray()).max() < 1e-5, side
                assert (np.count_nonzero(got, axis=1) <= 64).all()  # TOP_K is max_active_dims
        dense = SentenceTransformer(str(out / "dense"))
        for side, theirs in (("query", dense.encode_query), ("context", dense.encode_document)):
            assert np.abs(theirs(TEXTS) - ours[side]["dense"].numpy()).max() < 1e-5, side
        options = TextOptions(**json.loads((out / "dense" / "hybridpqa_text.json").read_text()))
        assert options == retriever.encoder.text and options.normalize  # the quickstart's product-QA options
        assert "## Text options" in (out / "dense" / "README.md").read_text()
        text = "The tent sleeps four adults and packs to 5 lbs."  # the options rewrite it: applied as the card says
        want = retriever.encode_documents([text]).dense
        got = dense.encode_document([options.context(text)], normalize_embeddings=retriever.encoder.encoding.cosine)
        assert np.abs(got - want).max() < 1e-4


def _readme_api_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_runs_as_written(splade_tiny, tmp_path, monkeypatch, capsys):
    block = _readme_api_block()
    assert len(block.strip().splitlines()) <= 8
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "splade-tiny").symlink_to(splade_tiny)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[('d1'"), out  # the charger answers the usb question


@pytest.mark.slow  # trains or evaluates end to end
def test_api_scores_are_evaluations_scores(splade_tiny, small_beir, tmp_path):
    """The API's hybrid (z-score fusion over the corpus) ranks as `hybridpqa evaluate` does."""
    overrides = ["RETRIEVER.FUSION.NORM", "z-score", "RETRIEVER.COMPUTE_FLOPS", "False"]
    results = main(["evaluate", f"--output={tmp_path}", f"--data={small_beir}", f"--config={ZERO_SHOT}",
                    "--split=test", "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), *overrides])
    retriever = HybridRetriever.from_pretrained(splade_tiny, overrides[:2], config=ZERO_SHOT)
    index = SearchIndex.build(retriever, small_beir / "corpus.jsonl", output=tmp_path / "index", shard_size=100)
    queries = {json.loads(l)["_id"]: json.loads(l)["text"] for l in (small_beir / "queries.jsonl").open()}
    from HybridPQA.evaluation.metrics import RETRIEVE_METRICS, score_run
    from HybridPQA.data.trec import read_qrels

    qrels = read_qrels(small_beir / "qrels" / "test.tsv")
    for scorer in ("hybrid", "dense", "sparse"):
        ours = score_run(index.search(queries, k=100, scorer=scorer), qrels, RETRIEVE_METRICS)
        for metric, value in results["test"]["metrics"][scorer].items():
            assert abs(ours[metric] - value) < 1e-4, (scorer, metric)
    top = index.search(queries[next(iter(queries))], k=3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    encoded = retriever.encode_queries([TEXTS[1]])
    assert encoded.sparse.shape[0] == 1 and {"br", "breast", "cancer"} <= set(encoded.decode(0, top=10))
    scores = retriever.score(TEXTS[1], TEXTS, scorer="sparse")
    assert scores.shape == (3,) and scores.argmax() == 1
    assert retriever.explain(TEXTS[1], TEXTS[1]).scores["hybrid"] == pytest.approx(
        sum(v for k, v in retriever.explain(TEXTS[1], TEXTS[1]).scores.items() if k.endswith("_part")))


@pytest.mark.slow  # trains or evaluates end to end
def test_index_search_commands_match_evaluate_on_scifact(splade_tiny, small_beir, tmp_path, capsys):
    """index + search + scoring the run == evaluate, on a real SciFact slice; the index resumes."""
    model = ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny)]
    results = main(["evaluate", f"--output={tmp_path}", f"--data={small_beir}", f"--config={ZERO_SHOT}", "--split=test",
                    "--env=none", "RETRIEVER.COMPUTE_FLOPS", "False", *model])["test"]
    # a crashed first run left two finished shards and a torn third: the second run reuses the two
    index_dir = tmp_path / "index"
    retriever = HybridRetriever.from_pretrained(splade_tiny, [], config=ZERO_SHOT)
    shards = SearchIndex.build(retriever, small_beir / "corpus.jsonl", output=index_dir, shard_size=64)
    (index_dir / "index.json").unlink()
    for name in ("sparse", "dense", "texts.jsonl"):
        shutil.rmtree(index_dir / name) if (index_dir / name).is_dir() else (index_dir / name).unlink()
    for extra in sorted((index_dir / "shards").glob("shard_*.npz"))[2:]:
        extra.unlink()
    (index_dir / "shards" / "shard_00002.npz.tmp.npz").write_bytes(b"torn")
    main(["index", f"--model={splade_tiny}", f"--corpus={small_beir / 'corpus.jsonl'}", f"--output={index_dir}",
          f"--config={ZERO_SHOT}", "--shard-size=64"])
    assert not (index_dir / "shards").exists() and len(shards) == results["documents"]
    queries = small_beir / "queries.jsonl"
    assert results["default_scorer"] == "sparse"  # a masked LM zero-shot: its CLS vector is untrained
    for scorer in ("hybrid", None):  # None: the default, sparse
        run = tmp_path / f"{scorer}.trec"
        main(["search", f"--index={index_dir}", f"--queries={queries}", f"--output={run}",
              *([f"--scorer={scorer}"] if scorer else [])])
        scored = main(["evaluate", f"--run={run}", f"--qrels={small_beir / 'qrels' / 'test.tsv'}",
                       "--metrics=ndcg@10,recall@100"])
        want = results["metrics"][scorer or "sparse"]["ndcg@10"]
        assert abs(scored["metrics"]["ndcg@10"] - want) < 1e-4, scorer
    capsys.readouterr()
    main(["search", f"--index={index_dir}", "--query=vitamin D and multiple sclerosis", "--k=3"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("q: vitamin D") and len(printed) == 4 and "  1. " in printed[1]
    assert "already holds an index" in error_of(["index", f"--model={splade_tiny}", f"--corpus={queries}",
                                                 f"--output={index_dir}"], capsys)


def test_index_and_search_bad_inputs_are_one_line_errors(splade_tiny, tmp_path, capsys):
    def corpus(name: str, text: str) -> Path:
        (tmp_path / name).write_text(text, encoding="utf-8")
        return tmp_path / name

    def index_error(path: Path) -> str:
        return error_of(["index", f"--model={splade_tiny}", f"--corpus={path}", f"--output={tmp_path / 'ix'}"], capsys)

    dup = corpus("dup.tsv", "a\tfirst text\nb\tsecond\na\tthird\n")
    assert f"{dup}:3: document id 'a' already used on line 1" in index_error(dup)
    empty = corpus("empty.jsonl", '{"_id": "a", "text": "x"}\n{"_id": "b", "title": "", "text": ""}\n')
    assert f"{empty}:2: document 'b' has an empty text" in index_error(empty)
    assert "no document in this file" in index_error(corpus("none.tsv", "id\ttext\n"))
    assert "unknown document file format '.txt'" in index_error(corpus("c.txt", "hello\n"))
    assert "4 tab-separated columns" in index_error(corpus("wide.tsv", "a\tt\tx\ty\n"))
    not_model = tmp_path / "photos"
    not_model.mkdir()
    (not_model / "cat.jpg").write_bytes(b"x")
    good = corpus("good.tsv", "id\ttext\na\tone\nb\ttwo\n")
    err = error_of(["index", f"--model={not_model}", f"--corpus={good}", f"--output={tmp_path / 'ix2'}"], capsys)
    assert "neither a HybridPQA checkpoint" in err
    err = error_of(["export", f"--checkpoint={tmp_path / 'gone'}", f"--output={tmp_path / 'st'}"], capsys)
    assert "gone: no such folder" in err
    err = error_of(["search", f"--index={tmp_path}", "--query=x"], capsys)
    assert "not a search index (no index.json)" in err
    assert not (tmp_path / "ix2").exists()


def test_ignore_identical_ids_drops_the_query_itself(splade_tiny, tmp_path):
    """BEIR's ArguAna / Quora convention: a query that is also a document does not retrieve itself."""
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = {"a": "solar panels convert sunlight into electricity", "b": "wind turbines make power from wind",
            "c": "panels of solar cells turn sunlight into power", "d": "a recipe for apple pie"}
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in docs.items()))
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "a", "text": docs["a"]}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na\tc\t1\n")
    args = [f"--data={beir}", f"--config={ZERO_SHOT}", "--split=test", "--env=none",
            "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "RETRIEVER.COMPUTE_FLOPS", "False",
            "SOLVER.TOP_RETRIEVE_COUNT", "3"]
    kept = main(["evaluate", f"--output={tmp_path / 'kept'}", *args])
    dropped = main(["evaluate", f"--output={tmp_path / 'dropped'}", *args, "RETRIEVER.DATA.IGNORE_IDENTICAL_IDS", "True"])
    run = (tmp_path / "kept" / "zero_shot_scifact" / "runs" / "test.sparse.trec").read_text().split()
    assert run[2] == "a"  # the query ranks itself first
    run = (tmp_path / "dropped" / "zero_shot_scifact" / "runs" / "test.sparse.trec").read_text().splitlines()
    assert [line.split()[2] for line in run][0] == "c" and len(run) == 3 and "a" not in [l.split()[2] for l in run]
    assert dropped["test"]["metrics"]["sparse"]["mrr@5"] == 1.0 > kept["test"]["metrics"]["sparse"]["mrr@5"]


def test_text_options_are_off_by_default_and_on_for_product_qa():
    from HybridPQA.data import build_text_options

    default = build_text_options(load_config(None, dotenv_path=None).RETRIEVER.DATA)
    assert default.context("BRCA1 3x4") == "BRCA1 3x4" and default.query("αvβ8?") == "αvβ8?"
    quick = build_text_options(load_config(QUICK, dotenv_path=None).RETRIEVER.DATA)
    assert quick.normalize and quick.insert_source and quick.flatten_attributes
    with pytest.raises(InputError):
        HybridRetriever.from_pretrained(REPO / "configs")  # a folder that is no model


@pytest.mark.slow
def test_benchmark_writes_one_table_over_datasets_and_resumes(splade_tiny, small_beir, tmp_path, capsys):
    second = tmp_path / "scifact-b"  # a second real BEIR folder: the slice without its last 100 abstracts
    shutil.copytree(small_beir, second)
    lines = (second / "corpus.jsonl").read_text().splitlines()
    (second / "corpus.jsonl").write_text("\n".join(lines[:-100]) + "\n")
    args = ["benchmark", f"--model={splade_tiny}", f"--config={ZERO_SHOT}", f"--datasets={small_beir},{second}",
            f"--output={tmp_path / 'bench'}", "RETRIEVER.COMPUTE_FLOPS", "False"]
    rows = main(args)
    by = {(r["dataset"], r["scorer"]): r for r in rows}
    for scorer in ("hybrid", "dense", "sparse (default)"):
        a, b, mean = by[(small_beir.name, scorer)], by[("scifact-b", scorer)], by[("average", scorer)]
        assert mean["ndcg@10"] == pytest.approx((a["ndcg@10"] + b["ndcg@10"]) / 2)
        assert a["documents"] == b["documents"] + 100 and a["latency_ms_p50"] > 0
    table = (tmp_path / "bench" / "benchmark.md").read_text()
    assert "| average | hybrid |" in table and (tmp_path / "bench" / "benchmark.csv").read_text().count("\n") == 10
    results = tmp_path / "bench" / "scifact-b" / "results" / "test.json"
    written = results.stat().st_mtime_ns
    again = main(args)  # finished datasets are reused, not evaluated again
    assert again == rows and results.stat().st_mtime_ns == written
    # the index an evaluation wrote is a searchable index folder, which `search` and `benchmark --index` reuse
    written_index = tmp_path / "bench" / small_beir.name / "index" / "test"
    run = tmp_path / "run.trec"
    main(["search", f"--index={written_index}", f"--queries={small_beir / 'queries.jsonl'}", f"--output={run}"])
    searched = main(["evaluate", f"--run={run}", f"--qrels={small_beir / 'qrels' / 'test.tsv'}", "--metrics=ndcg@10"])
    assert searched["metrics"]["ndcg@10"] == pytest.approx(by[(small_beir.name, "sparse (default)")]["ndcg@10"], abs=1e-4)
    reused = main([*args[:3], f"--datasets={small_beir}", f"--output={tmp_path / 'b3'}", f"--index={written_index}",
                   *args[5:]])
    assert [(r["scorer"], r["ndcg@10"]) for r in reused[:3]] == [(r["scorer"], r["ndcg@10"]) for r in rows[:3]]
    assert reused[0]["encode_seconds"] == 0  # nothing encoded again
    capsys.readouterr()
    assert "has no corpus.jsonl, queries.jsonl, qrels/test.tsv" in error_of(
        ["benchmark", f"--model={splade_tiny}", f"--datasets={small_beir},{tmp_path}", f"--output={tmp_path / 'b2'}"],
        capsys)  # the second dataset is checked before the first is evaluated
    assert not (tmp_path / "b2").exists()


@pytest.mark.slow
def test_api_reranks_product_qa_as_evaluate_does(splade_tiny, product_qa, tmp_path):
    """A trained quickstart checkpoint: its test metrics through the API equal `evaluate`'s. In fp32: under bf16
    an encoding depends on the batch it is in, which flips the many near-ties of product-QA sparse scores."""
    results = main(["train", f"--output={tmp_path}", f"--data={product_qa}", f"--config={QUICK}", "--env=none",
                    "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "SOLVER.TOTAL_TRAIN_STEPS", "4",
                    "SOLVER.NUM_STEP_PER_EVAL", "4", "DATA.COUNT", "40", "SOLVER.TRAIN_BATCH_SIZE", "4",
                    "SOLVER.OPTIMIZER.WARMUP_STEPS", "1", "RETRIEVER.COMPUTE_FLOPS", "False", "PRECISION", "fp32"])["test"]
    checkpoint = next((tmp_path / "quickstart" / "checkpoints").glob("step_*"))
    AutoModelForMaskedLM.from_pretrained(checkpoint / "query")
    retriever = HybridRetriever.from_pretrained(checkpoint)
    from HybridPQA.data import read_split
    from HybridPQA.evaluation.metrics import RERANK_METRICS, score_run

    data = read_split(product_qa / "test.json").head(40)
    for scorer in ("hybrid", "dense", "sparse"):
        run = {}
        for qid, cands in data.candidates.items():
            scores = retriever.score(data.queries[qid], [data.docs[d] for d in cands], scorer,
                                     sources=[data.doc_source.get(d) for d in cands])
            run[qid] = dict(zip(cands, scores.tolist()))
        ours = score_run(run, data.qrels, RERANK_METRICS)
        for metric, value in results["metrics"][scorer].items():
            assert abs(ours[metric] - value) < 1e-4, (scorer, metric)


def test_an_index_keeps_its_own_fusion_and_leaves_the_retriever_as_it_was(splade_tiny, tmp_path):
    """Loading an index never changes the retriever it is given: the index searches with the fusion it
    was built with, `retriever.score` keeps the retriever's."""
    from HybridPQA.scoring import Fusion

    docs = {"a": TEXTS[0], "b": TEXTS[1], "c": TEXTS[2]}
    built = HybridRetriever.from_pretrained(splade_tiny)
    built.fusion = Fusion("linear", "z-score", 0.3)
    SearchIndex.build(built, docs, tmp_path / "ix")
    retriever = HybridRetriever.from_pretrained(splade_tiny)
    before = retriever.fusion
    scores = retriever.score(TEXTS[0], list(docs.values()), scorer="hybrid")
    index = SearchIndex.load(tmp_path / "ix", retriever)
    assert retriever.fusion == before != index.fusion == Fusion("linear", "z-score", 0.3)
    assert np.array_equal(retriever.score(TEXTS[0], list(docs.values()), scorer="hybrid"), scores)
    fused = index.fusion.fuse(*(retriever.score(TEXTS[0], list(docs.values()), scorer=h)[None] for h in ("dense", "sparse")))[0]
    hits = index.search(TEXTS[0], k=3, scorer="hybrid")
    assert [d for d, _ in hits] == [list(docs)[i] for i in np.argsort(-fused, kind="stable")]


@pytest.mark.parametrize("hybrid", ["exact", "candidates"])
def test_a_detailed_search_scores_the_corpus_once_and_its_split_sums_to_the_score(splade_tiny, hybrid):
    """search_detailed gives the same ranking as search, each hit's raw head scores and its hybrid
    parts (summing to the score), from the search's own scoring: the corpus is scored once."""
    from HybridPQA.scoring import Fusion

    retriever = HybridRetriever.from_pretrained(splade_tiny, ["RETRIEVER.INDEX.HYBRID", hybrid,
                                                              "RETRIEVER.INDEX.CANDIDATES", "2"])
    retriever.fusion = Fusion("linear", "min-max", 0.4)
    index = SearchIndex.build(retriever, {f"d{i}": t for i, t in enumerate(TEXTS * 3)})
    calls, whole = [], index.corpus.all_scores
    index.corpus.all_scores = lambda *a, **k: calls.append(1) or whole(*a, **k)
    found = index.search_detailed([TEXTS[1], TEXTS[2]], k=3, scorer="hybrid")
    assert len(calls) == (1 if hybrid == "exact" else 0)
    for i, qid in enumerate(found.qids):
        assert found.runs[qid] == index.search([TEXTS[1], TEXTS[2]], k=3, scorer="hybrid")[i]
        dense, sparse = found.hits.parts
        assert np.allclose(dense[i] + sparse[i], found.hits.values[i], atol=1e-5)
        pairs = retriever.score([TEXTS[1], TEXTS[2]][i], [dict(enumerate(TEXTS * 3))[int(d[1:])] for d, _ in found.runs[qid]],
                                scorer="dense")
        assert np.allclose(found.hits.raw["dense"][i], pairs, atol=1e-3)
