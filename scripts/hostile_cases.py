"""Throw hostile inputs and faults at the `hybridpqa` command line and classify what happens.

Usage:
  hostile_cases.py [--repo=DIR] [--model=DIR] [--work=DIR] [--only=NAMES] [--output=FILE]

Options:
  --repo=DIR     the checkout whose HybridPQA is run (any version: cases use the command line only) [default: .]
  --model=DIR    splade-tiny [default: models/splade-tiny]
  --work=DIR     scratch folder (emptied) [default: /tmp/hpqa-hostile]
  --only=NAMES   comma-separated case names
  --output=FILE  also write the outcomes as JSON

Every case runs `python -m HybridPQA.cli ...` in a subprocess on tiny real data (5 SciFact
queries and 30 abstracts; 8 product-QA questions) and is classified as
  error     - exit 2 with one `error: ...` line (what a bad input should get),
  correct   - a good outcome the case checks (a repaired input, a refused payload, ...),
  traceback - a Python traceback (and nothing the case checks went wrong before it),
  wrong     - anything else: bad input silently accepted, a wrong result, data lost, a key sent or code run.
Run it on two checkouts (e.g. a `git worktree` of an older commit) to compare.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from docopt import docopt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


class Case:
    """`risk`: what a wrong outcome would be (data lost, security, silent); `probe(base_url) -> bool`:
    requests to a `serve` case's running server; `occupy_port`: its port is taken first; `env`: extra
    environment variables; `timed`: the output ends with the seconds the command took."""

    def __init__(self, name, argv, expect="error", setup=None, check=None, interrupt_after=None, risk="silent",
                 probe=None, occupy_port=False, env=None, timed=False):
        self.name, self.argv, self.expect, self.setup, self.check = name, argv, expect, setup, check
        self.interrupt_after, self.risk, self.probe, self.occupy_port = interrupt_after, risk, probe, occupy_port
        self.env, self.timed = env or {}, timed


def cli_env(repo: Path, extra: dict | None = None) -> dict:
    return {**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "CI": "true", **(extra or {})}


def run_cli(repo: Path, argv: list[str], cwd: Path, interrupt_after: float | None = None,
            env: dict | None = None) -> tuple[int, str]:
    process = subprocess.Popen([sys.executable, "-m", "HybridPQA.cli", *argv], cwd=cwd, env=cli_env(repo, env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if interrupt_after:
        time.sleep(interrupt_after)
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=600)
    return process.returncode, out + err


def run_case(repo: Path, case: Case, cwd: Path) -> tuple[int, str]:
    """The case's command; a `serve` case with a probe runs until the probe is done (bounded), then SIGTERM."""
    import socket

    if not case.probe and not case.occupy_port:
        started = time.perf_counter()
        code, output = run_cli(repo, case.argv, cwd, case.interrupt_after, case.env)
        return code, output + (f"\nelapsed {time.perf_counter() - started:.2f}" if case.timed else "")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    if case.occupy_port:
        holder.listen()
    else:
        holder.close()
    log = cwd / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "HybridPQA.cli", *case.argv, f"--port={port}"], cwd=cwd,
                                   env=cli_env(repo, case.env), stdout=sink, stderr=subprocess.STDOUT, text=True)
        ok = None
        for _ in range(1200):  # bounded: 120 s to load and listen
            if process.poll() is not None:
                break
            if case.probe and "Uvicorn running" in log.read_text():
                try:
                    ok = case.probe(f"http://127.0.0.1:{port}")
                except Exception as err:  # noqa: BLE001 - a failed request is the case's outcome
                    ok = False
                    print(f"    probe failed: {err.__class__.__name__}: {err}", flush=True)
                break
            time.sleep(0.1)
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
    holder.close()
    output = log.read_text()
    if case.probe:
        case.check = (lambda s, c, o, ok=bool(ok): ok)
        if ok is None:
            return process.returncode, output + "\nprobe never ran: the server did not start"
        return (0 if ok else 1), output
    return process.returncode, output


def classify(case: Case, code: int, output: str, sandbox: Path) -> str:
    ok = case.check(sandbox, code, output) if case.check else True
    if "Traceback (most recent call last)" in output:
        # a crash after the harm (a key sent, work done) is the harm; a server's 500 is its traceback
        return "traceback" if ok or case.probe else "wrong"
    if case.expect == "error":
        errors = [l for l in output.splitlines() if l.startswith("error: ")]
        return "error" if code == 2 and len(errors) == 1 and ok else "wrong"
    return "correct" if ok else "wrong"


# ---------------------------------------------------------------- fixtures

def tiny_beir(root: Path, source: Path) -> Path:
    qrels = [l.split("\t") for l in (source / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    qids = list(dict.fromkeys(q for q, _, _ in qrels))[:5]
    keep = {d for q, d, _ in qrels if q in qids}
    docs = [l for l in (source / "corpus.jsonl").read_text().splitlines() if json.loads(l)["_id"] in keep]
    docs += [l for l in (source / "corpus.jsonl").read_text().splitlines()[:60] if json.loads(l)["_id"] not in keep][:25]
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(docs) + "\n")
    (root / "queries.jsonl").write_text("\n".join(l for l in (source / "queries.jsonl").read_text().splitlines()
                                                  if json.loads(l)["_id"] in qids) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        "\t".join(r) + "\n" for r in qrels if r[0] in qids))
    return root


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def rename_query(beir: Path, new: str) -> None:
    """The first judged query's id becomes `new`, in queries.jsonl and the qrels (that id only)."""
    qrels = (beir / "qrels" / "test.tsv").read_text().splitlines()
    old = qrels[1].split("\t")[0]
    (beir / "qrels" / "test.tsv").write_text("\n".join(
        [qrels[0]] + [new + l[len(old):] if l.split("\t")[0] == old else l for l in qrels[1:]]) + "\n")
    queries = [json.loads(l) for l in (beir / "queries.jsonl").read_text().splitlines()]
    (beir / "queries.jsonl").write_text("".join(json.dumps({**q, "_id": new if q["_id"] == old else q["_id"]}) + "\n"
                                                for q in queries))


def first_doc_id(beir: Path) -> str:
    return json.loads((beir / "corpus.jsonl").read_text().splitlines()[0])["_id"]


def results_of(sandbox: Path, exp: str = "zero_shot_scifact", split: str = "test") -> dict | None:
    path = sandbox / "out" / exp / "results" / f"{split}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cases(model: Path) -> list[Case]:
    from hostile_surfaces import surface_cases  # the databases, serve and exports; built on Case

    zs = str(ROOT / "configs" / "zero_shot_scifact.yaml")
    quick = str(ROOT / "configs" / "quickstart.yaml")
    base = ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model), "RETRIEVER.COMPUTE_FLOPS", "False", "NUM_THREADS", "1"]

    def evaluate(*extra, data="beir", cfg=zs, split="test"):
        return ["evaluate", "--path_output=out", f"--path_data={data}", f"--path_cfg_exp={cfg}", f"--split={split}",
                "--env=none", *base, *extra]

    def train(*extra, data="pqa"):
        return ["train", "--path_output=out", f"--path_data={data}", f"--path_cfg_exp={quick}", "--env=none", *base,
                "SOLVER.TOTAL_TRAIN_STEPS", "2", "SOLVER.NUM_STEP_PER_EVAL", "2", "DATA.COUNT", "8",
                "SOLVER.TRAIN_BATCH_SIZE", "4", *extra]

    def nothing_outside(sandbox: Path, code: int, output: str) -> bool:
        return not any(p.name.startswith(("escaped", "hpqa-x")) for p in sandbox.parent.parent.rglob("*")) \
            and not Path("/tmp/hpqa-x").exists() and (sandbox / "keep.txt").is_file()

    def bad_doc_id(value):
        return lambda s: edit(s / "beir" / "corpus.jsonl", f'"_id": "{first_doc_id(s / "beir")}"',
                              f'"_id": {json.dumps(value)}')

    def json_split(records):
        def setup(s):
            (s / "js").mkdir()
            (s / "js" / "test.json").write_text(json.dumps(records), encoding="utf-8")
        return setup

    def tsv_split(text):
        def setup(s):
            (s / "ts").mkdir()
            (s / "ts" / "test.csv").write_text(text, encoding="utf-8")
        return setup

    header = "qid\tASIN\tqa_pair_id\tquestion\tcandidate\tlabel\tsource\tconfidence\n"
    good = [{"qid": "1", "question": "is it waterproof", "positive_ctxs": [{"cid": "a", "text": "it is waterproof"}],
             "negative_ctxs": [{"cid": "b", "text": "it is red"}]}]
    issues_reported = lambda s, c, o: (results_of(s, "zero_shot_scifact") or {}).get("input_issues", 0) > 0

    def planted(s):
        cfg = subprocess.run([sys.executable, "-m", "HybridPQA.cli", *train("--print-config")], cwd=s, text=True,
                             capture_output=True, env={**os.environ, "PYTHONPATH": os.environ["HOSTILE_REPO"]}).stdout
        last = s / "out" / "quickstart" / "checkpoints" / "last"
        last.mkdir(parents=True)
        (s / "out" / "quickstart" / "config.yaml").write_text(cfg)
        import torch

        class Payload:  # pickles as a call of exec: what a planted trainer.pt can do
            def __reduce__(self):
                return (exec, (f"open({str(s / 'pwned')!r}, 'w').write('x')",))

        torch.save({"optimizer": Payload()}, last / "trainer.pt")
        shutil.copy(last / "trainer.pt", last / "model.pt")

    return [
        # 1. EXP and --overwrite
        Case("exp-dotdot-overwrite", train("--overwrite", "EXP", ".."), check=nothing_outside),
        Case("exp-empty-overwrite", train("--overwrite", "EXP", "''"), check=nothing_outside),
        Case("exp-absolute", evaluate("EXP", "/tmp/hpqa-x"), check=nothing_outside),
        Case("exp-300-chars", evaluate("EXP", "x" * 300)),
        Case("checkpoint-exp-escapes", ["evaluate", "--path_output=out", "--path_data=beir", "--checkpoint=ck",
                                        "--split=test", "--env=none"],
             setup=lambda s: ((s / "ck").mkdir(), (s / "ck" / "config.yaml").write_text("EXP: ../../../escaped\n"),
                              (s / "ck" / "model.pt").write_bytes(b"")), check=nothing_outside),
        # 2. code in a file
        Case("planted-trainer-pickle", train("--resume"), setup=planted,
             check=lambda s, c, o: not (s / "pwned").exists()),
        # 5. ids choosing file names
        Case("qid-escapes-visualize", ["train", "--path_output=out", "--path_data=beir", f"--path_cfg_exp={zs}",
                                       "--env=none", *base, "RETRIEVER.VISUALIZE", "True", "DATA.TEST_DATA_PATH",
                                       "qrels/test.tsv", "DATA.VAL_DATA_PATH", "None", "DATA.TRAIN_DATA_PATH", "None"],
             expect="correct", setup=lambda s: rename_query(s / "beir", "../../../../escaped_q"),
             check=lambda s, c, o: c == 0 and nothing_outside(s, c, o)),
        # 6. duplicates
        Case("beir-duplicate-doc", evaluate(), expect="correct",
             setup=lambda s: (s / "beir" / "corpus.jsonl").write_text((s / "beir" / "corpus.jsonl").read_text() +
                                                                      json.dumps({"_id": first_doc_id(s / "beir"),
                                                                                  "text": "other"}) + "\n"),
             check=issues_reported),
        Case("beir-duplicate-query", evaluate(), expect="correct",
             setup=lambda s: (s / "beir" / "queries.jsonl").write_text(
                 (s / "beir" / "queries.jsonl").read_text() + json.dumps(
                     {"_id": (s / "beir" / "qrels" / "test.tsv").read_text().split()[3], "text": "other"}) + "\n"),
             check=issues_reported),
        Case("json-duplicate-qid", evaluate(data="js", cfg=str(ROOT / "configs" / "zero_shot.yaml")), expect="correct",
             setup=json_split(good + [{**good[0], "question": "another question"}]),
             check=lambda s, c, o: (results_of(s, "zero_shot") or {}).get("input_issues", 0) > 0),
        Case("tsv-qid-two-questions", evaluate(data="ts", cfg=str(ROOT / "configs" / "zero_shot.yaml")),
             expect="correct", setup=tsv_split(header + "1\tA\tp1\tq one?\tyes\t1\treview\t1\n"
                                               "1\tA\tp2\tq two?\tno\t0\treview\t1\n"),
             check=lambda s, c, o: (results_of(s, "zero_shot") or {}).get("input_issues", 0) > 0),
        # 7. ids TREC cannot hold
        Case("doc-id-space", evaluate(), setup=bad_doc_id("has space")),
        Case("doc-id-tab", evaluate(), setup=bad_doc_id("has\ttab")),
        Case("doc-id-newline", evaluate(), setup=bad_doc_id("has\nline")),
        Case("doc-id-u2028", evaluate(), setup=bad_doc_id("has\u2028sep")),
        Case("doc-id-empty", evaluate(), setup=bad_doc_id("")),
        # 8. empty splits
        Case("empty-qrels", evaluate(), setup=lambda s: (s / "beir" / "qrels" / "test.tsv").write_text("")),
        Case("empty-corpus", evaluate(), setup=lambda s: (s / "beir" / "corpus.jsonl").write_text("")),
        Case("header-only-tsv", evaluate(data="ts", cfg=str(ROOT / "configs" / "zero_shot.yaml")),
             setup=tsv_split(header)),
        Case("empty-json-list", evaluate(data="js", cfg=str(ROOT / "configs" / "zero_shot.yaml")),
             setup=json_split([])),
        Case("trec-qrels-in-beir", evaluate(), expect="correct",
             setup=lambda s: (s / "beir" / "qrels" / "test.tsv").write_text("".join(
                 f"{q} 0 {d} {r}\n" for q, d, r in (l.split("\t") for l in
                                                   (s / "beir" / "qrels" / "test.tsv").read_text().splitlines()[1:]))),
             check=lambda s, c, o: c == 0 and (results_of(s) or {}).get("queries", 0) == 5),
        Case("no-positive", evaluate(), setup=lambda s: edit(s / "beir" / "qrels" / "test.tsv", "\t1\n", "\t0\n", 99)),
        # 9. config loader
        Case("base-cycle", ["train", "--path_output=out", "--path_data=pqa", "--path_cfg_exp=a.yaml", "--env=none"],
             setup=lambda s: ((s / "a.yaml").write_text("_BASE_: b.yaml\n"), (s / "b.yaml").write_text("_BASE_: a.yaml\n"))),
        Case("base-not-a-string", ["train", "--path_output=out", "--path_data=pqa", "--path_cfg_exp=a.yaml", "--env=none"],
             setup=lambda s: (s / "a.yaml").write_text("_BASE_: [x.yaml]\n")),
        Case("yaml-dotted-unknown", ["train", "--path_output=out", "--path_data=pqa", "--path_cfg_exp=a.yaml",
                                     "--env=none"], setup=lambda s: (s / "a.yaml").write_text("NOPE.X: 1\n")),
        Case("yaml-dotted-valid", ["train", "--path_output=out", "--path_data=pqa", "--path_cfg_exp=a.yaml", "--env=none",
                                   "--print-config"], expect="correct",
             setup=lambda s: (s / "a.yaml").write_text("RETRIEVER.SOLVER.ALPHA: 0.3\n"),
             check=lambda s, c, o: c == 0 and "ALPHA: 0.3" in o),
        Case("betas-strings", train("SOLVER.OPTIMIZER.BETAS", "['a', 'b']")),
        Case("dict-for-none-key", train("DATA.HARD_NEGATIVES_RUN", "{'a': 1}")),
        Case("deep-yaml", ["train", "--path_output=out", "--path_data=pqa", "--path_cfg_exp=a.yaml", "--env=none"],
             setup=lambda s: (s / "a.yaml").write_text("A: " + "[" * 6000 + "]" * 6000 + "\n")),
        Case("json-ctxs-not-a-list", evaluate(data="js", cfg=str(ROOT / "configs" / "zero_shot.yaml")),
             expect="correct", setup=json_split(good + [{"qid": "2", "question": "q", "positive_ctxs": 5}]),
             check=lambda s, c, o: c == 0 and (results_of(s, "zero_shot") or {}).get("input_issues", 0) > 0),
        Case("model-path-number", evaluate("MODEL.MODEL_PATH", "5")),
        # 10. outputs
        Case("evaluate-under-a-file", ["evaluate", "--path_output=afile/out", "--path_data=beir", f"--path_cfg_exp={zs}",
                                       "--split=test", "--env=none", *base],
             setup=lambda s: (s / "afile").write_text("x")),
        Case("fuse-output-is-dir", ["fuse", "--runs=a.trec,b.trec", "--output=."], setup=lambda s: two_runs(s)),
        Case("mine-output-is-dir", ["mine", "--run=a.trec", "--path_data=beir", "--split=test", "--output=."],
             setup=lambda s: two_runs(s)),
        Case("checkpoint-without-config", ["evaluate", "--path_output=out", "--path_data=beir", "--checkpoint=ck",
                                           f"--path_cfg_exp={zs}", "--split=test", "--env=none"],
             setup=lambda s: ((s / "ck").mkdir(), (s / "ck" / "model.pt").write_bytes(b""))),
        # 11. fuse
        *[Case(f"fuse-rrf-k-{k}", ["fuse", "--runs=a.trec,b.trec", "--output=f.trec", "--method=rrf", f"--rrf_k={k}"],
               setup=lambda s: two_runs(s), check=lambda s, c, o: not (s / "f.trec").exists())
          for k in ("inf", "nan", "1e30", "-1")],
        Case("fuse-tune-without-qrels", ["fuse", "--runs=a.trec,b.trec", "--output=f.trec", "--tune"],
             setup=lambda s: two_runs(s)),
        Case("fuse-metric-bogus", ["fuse", "--runs=a.trec,b.trec", "--output=f.trec", "--qrels=q.tsv", "--metric=bogus"],
             setup=lambda s: two_runs(s)),
        Case("fuse-non-utf8-run", ["fuse", "--runs=a.trec,b.trec", "--output=f.trec"],
             setup=lambda s: (two_runs(s), (s / "a.trec").write_bytes(b"q1 Q0 d1 1 \xff\xfe t\n"))),
        Case("fuse-weights-nan", ["fuse", "--runs=a.trec,b.trec", "--output=f.trec", "--weights=nan,1"],
             setup=lambda s: two_runs(s)),
        Case("fuse-nan-scores", ["fuse", "--runs=a.trec,b.trec", "--output=f.trec"],
             setup=lambda s: (two_runs(s), (s / "a.trec").write_text("q1 Q0 d1 1 nan t\n"))),
        # 12. late checks
        Case("select-metric-rerank", train("SOLVER.SELECT_METRIC", "recall@100"),
             check=lambda s, c, o: not (s / "out" / "quickstart" / "metrics.jsonl").exists()),
        # 13. messages
        Case("bom-beir", evaluate(), expect="correct",
             setup=lambda s: [(s / "beir" / n).write_text("\ufeff" + (s / "beir" / n).read_text(), encoding="utf-8")
                              for n in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")],
             check=lambda s, c, o: c == 0 and (results_of(s) or {}).get("documents") == len(
                 (s / "beir" / "corpus.jsonl").read_text(encoding="utf-8-sig").splitlines())
             and (results_of(s) or {}).get("input_issues") == 0),
        Case("bom-tsv", evaluate(data="ts", cfg=str(ROOT / "configs" / "zero_shot.yaml")), expect="correct",
             setup=tsv_split("\ufeff" + header + "1\tA\tp1\tq one?\tyes\t1\treview\t1\n1\tA\tp2\tq one?\tno\t0\treview\t1\n"),
             check=lambda s, c, o: c == 0),
        Case("bom-json", evaluate(data="js", cfg=str(ROOT / "configs" / "zero_shot.yaml")), expect="correct",
             setup=lambda s: (json_split(good)(s), (s / "js" / "test.json").write_text(
                 "\ufeff" + (s / "js" / "test.json").read_text(), encoding="utf-8")), check=lambda s, c, o: c == 0),
        Case("ctrl-c-training", train("SOLVER.TOTAL_TRAIN_STEPS", "400"), expect="correct", interrupt_after=12,
             check=lambda s, c, o: c in (130, 2) and "--resume" in o.strip().splitlines()[-1]),
        *written_folder_cases(model),
        *surface_cases(model, CK, STEP2, SHARED),
    ]


CK = "run/quickstart/checkpoints/last"  # the fixtures' trained checkpoint, inside its run
STEP2 = "run/quickstart/checkpoints/step_000002"  # the same run two steps earlier: other weights
SHARED: dict = {}  # a Milvus server and an HTTP listener, shared by the cases that need them


def intact(*names: str):
    """The case keeps these files of the sandbox."""
    return lambda s, c, o: all((s / n).is_file() for n in names)


def foreign_site(s: Path) -> None:
    (s / "site").mkdir()
    (s / "site" / "index.json").write_text('{"title": "my web site"}')
    (s / "site" / "page.html").write_text("<p>mine</p>")


def cli_setup(*argv: str):
    """Run the command line once in the sandbox before the case (e.g. an index to damage)."""
    return lambda s: run_cli(Path(os.environ["HOSTILE_REPO"]), list(argv), s)


def written_folder_cases(model: Path) -> list[Case]:
    """The surfaces that write or read folders: index, search, export, evaluate --run, saved values."""
    index = ["index", f"--model={model}", "--corpus=beir/corpus.jsonl", "--output=ix"]

    def damaged_alpha(s: Path) -> None:
        run_cli(Path(os.environ["HOSTILE_REPO"]), index, s)
        edit(s / "ix" / "index.json", '"alpha": 0.5', '"alpha": 1e308')

    def swapped(s: Path) -> None:
        shutil.copytree(s / CK, s / "ck")
        for name in ("query", "context"):
            (s / "ck" / name / "model.safetensors").rename(s / "ck" / f"{name}.tmp")
        (s / "ck" / "query.tmp").rename(s / "ck" / "context" / "model.safetensors")
        (s / "ck" / "context.tmp").rename(s / "ck" / "query" / "model.safetensors")

    def pairs(n: int):
        def setup(s: Path) -> None:
            (s / "mine").mkdir()
            (s / "mine" / "train.jsonl").write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p{i}"}) + "\n"
                                                           for i in range(n)))
        return setup

    return [
        Case("export-into-its-run", ["export", f"--checkpoint={CK}", "--output=run/quickstart", "--overwrite"],
             check=intact(f"{CK}/hybridpqa.json", "run/quickstart/config.yaml")),
        Case("export-over-foreign", ["export", f"--checkpoint={CK}", "--output=site", "--overwrite"],
             setup=foreign_site, check=intact("site/page.html")),
        Case("index-over-foreign-index-json", [*index[:3], "--output=site", "--overwrite"], setup=foreign_site,
             check=intact("site/page.html", "site/index.json")),
        Case("index-typo-corpus-overwrite", ["index", f"--model={model}", "--corpus=TYPO.jsonl", "--output=ix",
                                             "--overwrite"], setup=cli_setup(*index), check=intact("ix/index.json")),
        Case("index-into-its-checkpoint", ["index", f"--model={CK}", "--corpus=beir/corpus.jsonl", f"--output={CK}"],
             check=intact(f"{CK}/config.yaml", f"{CK}/hybridpqa.json")),
        Case("index-output-dot", ["index", f"--model={model}", "--corpus=beir/corpus.jsonl", "--output=."]),
        Case("search-alpha-1e308", ["search", "--index=ix", "--query=vitamin d"], setup=damaged_alpha),
        Case("search-k-zero", ["search", "--index=ix", "--query=vitamin d", "--k=0"], setup=cli_setup(*index)),
        Case("evaluate-swapped-weights", ["evaluate", "--output=out", "--data=pqa", "--checkpoint=ck", "--split=test",
                                          "--env=none", "RETRIEVER.COMPUTE_FLOPS", "False"], setup=swapped),
        Case("run-without-judged-queries", ["evaluate", "--run=a.trec", "--qrels=beir/qrels/test.tsv"],
             setup=lambda s: two_runs(s)),
        Case("small-pairs-empty-val", ["train", "--output=out", "--data=mine", f"--config={ROOT / 'configs' / 'own_data.yaml'}",
                                       "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model),
                                       "RETRIEVER.DATA.TRAIN_DATA_PATH", "train.jsonl", "RETRIEVER.DATA.VAL_FROM_TRAIN", "0.01",
                                       "SOLVER.TOTAL_TRAIN_STEPS", "4", "SOLVER.NUM_STEP_PER_EVAL", "2"],
             setup=pairs(2), check=lambda s, c, o: not (s / "out" / "own_data" / "checkpoints").exists()),
    ]


def two_runs(s: Path) -> None:
    (s / "a.trec").write_text("q1 Q0 d1 1 2.0 a\nq1 Q0 d2 2 1.0 a\n")
    (s / "b.trec").write_text("q1 Q0 d2 1 3.0 b\nq1 Q0 d1 2 0.5 b\n")
    (s / "q.tsv").write_text("q1\td1\t1\n")


def main(argv=None) -> dict:
    args = docopt(__doc__, argv=argv)
    repo, work = Path(args["--repo"]).resolve(), Path(args["--work"])
    os.environ["HOSTILE_REPO"] = str(repo)
    model = Path(args["--model"]).resolve()
    shutil.rmtree(work, ignore_errors=True)
    fixtures = work / "fixtures"
    tiny_beir(fixtures / "beir", ROOT / "data" / "raw" / "scifact")
    (fixtures / "pqa").mkdir()
    for split in ("train", "dev", "test"):
        shutil.copy(ROOT / "data" / "product-qa" / f"{split}.json", fixtures / "pqa")
    # a trained checkpoint inside its run directory, for the cases that read or write beside one
    run_cli(repo, ["train", "--output=run", "--data=pqa", f"--config={ROOT / 'configs' / 'quickstart.yaml'}", "--env=none",
                   "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model), "RETRIEVER.DO_TEST", "False",
                   "SOLVER.TOTAL_TRAIN_STEPS", "4", "SOLVER.NUM_STEP_PER_EVAL", "2", "SOLVER.CP_SAVE_LIMIT", "3",
                   "DATA.COUNT", "8", "SOLVER.TRAIN_BATCH_SIZE", "4", "NUM_THREADS", "1"], fixtures)
    only = set(filter(None, (args["--only"] or "").split(",")))
    from hostile_surfaces import Listener, MilvusServer

    shared = work / "shared"  # built once, read by many cases
    shared.mkdir()
    run_cli(repo, ["index", f"--model={model}", f"--corpus={fixtures / 'beir' / 'corpus.jsonl'}",
                   f"--output={shared / 'served'}"], shared)
    run_cli(repo, ["export", f"--checkpoint={fixtures / CK}", f"--output={shared / 'onnx'}", "--format=onnx"], shared)
    SHARED.update(milvus=MilvusServer(work / "milvus-server"), listener=Listener(), onnx=shared / "onnx",
                  served=shared / "served")
    outcomes, risks = {}, {}
    try:
        for case in cases(model):
            if only and case.name not in only:
                continue
            sandbox = work / "cases" / case.name / "sandbox"
            shutil.copytree(fixtures, sandbox)
            (sandbox / "keep.txt").write_text("mine")
            try:
                if case.setup:
                    case.setup(sandbox)
            except Exception as err:  # noqa: BLE001 - a setup that fails says so and the run goes on
                code, output = -1, f"setup failed: {err}"
                outcomes[case.name], risks[case.name] = "setup-failed", case.risk
                print(f"{case.name:36s} setup-failed  {output[:300]}", flush=True)
                continue
            code, output = run_case(repo, case, sandbox)
            outcomes[case.name], risks[case.name] = classify(case, code, output, sandbox), case.risk
            last = [l for l in output.strip().splitlines() if l][-1:] or [""]
            print(f"{case.name:36s} {outcomes[case.name]:9s} exit {code:3d}  {last[0][:100]}", flush=True)
            shutil.rmtree(Path("/tmp/hpqa-x"), ignore_errors=True)
    finally:
        SHARED["milvus"].stop()
    counts = Counter(outcomes.values())
    wrong = Counter(risks[n] for n, o in outcomes.items() if o == "wrong")
    print(f"\n{len(outcomes)} cases: " + ", ".join(f"{counts[k]} {k}" for k in ("error", "correct", "traceback", "wrong",
                                                                          "setup-failed") if counts[k] or k != "setup-failed")
          + (" (wrong: " + ", ".join(f"{v} {k}" for k, v in wrong.items()) + ")" if wrong else ""))
    if args["--output"]:
        Path(args["--output"]).write_text(json.dumps({"repo": str(repo), "outcomes": outcomes, "risks": risks,
                                                      "counts": counts, "wrong": wrong}, indent=1))
    return outcomes


if __name__ == "__main__":
    main()
