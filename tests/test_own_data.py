"""Training on your own pairs: every format trains 20 steps and evaluates, on real SciFact text."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from HybridPQA.cli import main
from HybridPQA.data import build_split
from HybridPQA.config import load_config

REPO = Path(__file__).resolve().parents[1]
OWN = str(REPO / "configs" / "own_data.yaml")


@pytest.fixture(scope="module")
def pairs(small_beir, tmp_path_factory) -> dict:
    """(query, positive, negative) triples of the SciFact slice: each query's judged abstract and the
    abstract three lines further down the corpus."""
    corpus = {o["_id"]: (o["title"] + " " + o["text"]).strip()
              for o in map(json.loads, (small_beir / "corpus.jsonl").read_text().splitlines())}
    queries = {o["_id"]: o["text"] for o in map(json.loads, (small_beir / "queries.jsonl").read_text().splitlines())}
    ids = list(corpus)
    rows = [l.split("\t") for l in (small_beir / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    triples = [(q, d, ids[(ids.index(d) + 3) % len(ids)]) for q, d, _ in rows]
    out = tmp_path_factory.mktemp("own")
    with (out / "texts.jsonl").open("w") as f:
        for q, d, n in triples:
            f.write(json.dumps({"query": queries[q], "positive": corpus[d], "negatives": [corpus[n]]}) + "\n")
    with (out / "ids.jsonl").open("w") as f:
        for q, d, n in triples:
            f.write(json.dumps({"query": queries[q], "positive": [d], "negatives": [n]}) + "\n")
    shutil.copy(small_beir / "corpus.jsonl", out / "corpus.jsonl")
    with (out / "pairs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "positive", "negative"])
        writer.writerows([queries[q], corpus[d], corpus[n]] for q, d, n in triples)
    with (out / "pairs.tsv").open("w") as f:
        f.write("query\tpositive\n" + "".join(f"{queries[q]}\t{corpus[d]}\n" for q, d, _ in triples))
    import datasets

    datasets.Dataset.from_dict({"anchor": [queries[q] for q, _, _ in triples],
                                "positive": [corpus[d] for _, d, _ in triples],
                                "negative": [corpus[n] for _, _, n in triples]}).save_to_disk(str(out / "hf"))
    beir = out / "beir"
    shutil.copytree(small_beir, beir)
    shutil.copy(beir / "qrels" / "test.tsv", beir / "qrels" / "train.tsv")
    return {"dir": out, "triples": triples, "queries": queries, "corpus": corpus}


def test_every_format_reads_the_same_questions(pairs):
    cfg = load_config(OWN, dotenv_path=None).RETRIEVER.DATA
    by_ids = load_config(OWN, ["RETRIEVER.DATA.CORPUS_PATH", "corpus.jsonl"], dotenv_path=None).RETRIEVER.DATA
    root = pairs["dir"]
    reads = {"texts.jsonl": build_split(root / "texts.jsonl", cfg), "ids.jsonl": build_split(root / "ids.jsonl", by_ids, root),
             "pairs.csv": build_split(root / "pairs.csv", cfg), "pairs.tsv": build_split(root / "pairs.tsv", cfg),
             "hf": build_split(root / "hf", cfg)}
    questions = set(pairs["queries"][q] for q, _, _ in pairs["triples"])
    for name, data in reads.items():
        assert set(data.queries.values()) == questions, name
        assert data.mode == "retrieve" and not data.issues, name
        positives = sum(len(data.positives(q)) for q in data.queries)
        assert positives == len({(q, d) for q, d, _ in pairs["triples"]}), name  # one question, several positives
        if name != "pairs.tsv":
            assert sum(len(v) for v in data.hard_negatives.values()) > 0, name
    assert set(reads["ids.jsonl"].docs) <= set(pairs["corpus"])  # the corpus's own ids


def test_bad_rows_are_reported_not_dropped_silently(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"query": "q1", "positive": "p1"}\n{"query": "", "positive": "p"}\nnot json\n'
                    '{"query": "q1", "positive": ["p2"], "negatives": ["p1"]}\n{"query": "q2", "positive": "x"}\n')
    data = build_split(path, load_config(OWN, dotenv_path=None).RETRIEVER.DATA)
    assert [i.split(": ", 1)[0] for i in data.issues] == [f"{path}:2", f"{path}:3"]
    q1 = next(q for q, t in data.queries.items() if t == "q1")
    assert len(data.positives(q1)) == 2 and data.hard_negatives[q1] == []  # p1 is q1's positive, never its negative


@pytest.mark.slow
@pytest.mark.parametrize("train, extra", [
    ("texts.jsonl", []), ("ids.jsonl", ["RETRIEVER.DATA.CORPUS_PATH", "corpus.jsonl"]), ("pairs.csv", []),
    ("pairs.tsv", []), ("hf", []), ("beir/qrels/train.tsv", ["RETRIEVER.DATA.TEST_DATA_PATH", "beir/qrels/test.tsv"])])
def test_twenty_steps_on_each_format_train_and_evaluate(pairs, splade_tiny, tmp_path, train, extra):
    results = main(["train", f"--output={tmp_path}", f"--data={pairs['dir']}", f"--config={OWN}", "--env=none",
                    "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "RETRIEVER.DATA.TRAIN_DATA_PATH", train,
                    "RETRIEVER.DATA.VAL_FROM_TRAIN", "0.2", "SOLVER.TOTAL_TRAIN_STEPS", "20", "SOLVER.NUM_STEP_PER_EVAL",
                    "20", "SOLVER.TRAIN_BATCH_SIZE", "4", "SOLVER.OPTIMIZER.WARMUP_STEPS", "2",
                    "RETRIEVER.MODEL.CONTEXT_MAX_LENGTH", "64", "RETRIEVER.COMPUTE_FLOPS", "False", *extra])
    run = tmp_path / "own_data"
    assert "20" in (run / "checkpoints" / "best.json").read_text()
    for split, res in results.items():
        assert res["mode"] == "retrieve" and 0.0 < res["metrics"]["hybrid"]["ndcg@10"] <= 1.0, split
    card = next((run / "checkpoints").glob("step_*")) / "README.md"
    assert "## Results" in card.read_text()


@pytest.mark.slow
def test_tracking_backends_receive_every_scalar_and_the_config(splade_tiny, product_qa, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    sent = []  # what wandb's Run.log receives, and then writes to the offline run file
    real_log = wandb.sdk.wandb_run.Run.log

    def spy(self, data, step=None, **kwargs):
        sent.append((step, dict(data)))
        return real_log(self, data, step=step, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", spy)
    main(["train", f"--output={tmp_path}", f"--data={product_qa}", f"--config={REPO / 'configs' / 'quickstart.yaml'}",
          "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(splade_tiny), "SOLVER.TOTAL_TRAIN_STEPS", "4",
          "SOLVER.NUM_STEP_PER_EVAL", "2", "SOLVER.LOG_STEPS", "1", "DATA.COUNT", "24", "SOLVER.TRAIN_BATCH_SIZE", "4",
          "RETRIEVER.DO_TEST", "False", "LOG.BACKENDS", '["tensorboard", "wandb"]'])
    run = tmp_path / "quickstart"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    for record in records:
        prefix = "val/" if record.get("split") == "val" else "train/"
        for key, value in record.items():
            if key not in ("step", "split"):
                logged = {e.step: e.value for e in events.Scalars(prefix + key)}
                assert logged[record["step"]] == pytest.approx(value, rel=1e-6), (prefix + key, record["step"])
    assert "val/hybrid/mrr@5" in events.Tags()["scalars"] and "config" in str(events.Tags())
    assert len(sent) == len(records)
    for (step, data), record in zip(sent, records):
        prefix = "val/" if record.get("split") == "val" else "train/"
        assert step == record["step"] and data == {prefix + k: v for k, v in record.items() if k not in ("step", "split")}
    offline = next((run / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()  # protobuf: names are plain bytes
    assert all(name.encode() in offline for _, data in sent for name in data) and b"TOTAL_TRAIN_STEPS" in offline
