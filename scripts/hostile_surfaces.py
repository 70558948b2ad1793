"""The hostile cases of the surfaces a model and an index leave the process by: the vector databases
(embedded Qdrant and Milvus Lite, a real `milvus-lite server` on 127.0.0.1), `serve` (real HTTP
requests to a real server), ONNX and sentence-transformers exports, and the types and settings
they read. Used by hostile_cases.py, whose runner and classes these cases share.

Each case names its `risk`: what a `wrong` outcome means (data lost, security, silent). A local
HTTP listener (127.0.0.1) catches what a client would send to a URL read from a folder.
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from hostile_cases import Case, edit, intact, run_cli

SECRET = "hostile-secret-key-0451"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Listener:
    """An HTTP server on 127.0.0.1 that records every request's headers and answers 503."""

    def __init__(self):
        self.seen: list[str] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                seen.append(str(self.headers))
                self.send_response(503)
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def got_secret(self) -> bool:
        return any(SECRET in h for h in self.seen)


class MilvusServer:
    """A real `milvus-lite server` on 127.0.0.1 for the cases that share one database (None if absent)."""

    def __init__(self, data: Path):
        self.url = None
        if shutil.which("milvus-lite") is None:
            return
        port = free_port()
        data.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(["milvus-lite", "server", "--data-dir", str(data), "--host", "127.0.0.1",
                                         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):  # bounded: 30 s
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    self.url = f"http://127.0.0.1:{port}"
                    return
            time.sleep(0.1)

    def stop(self) -> None:
        if self.url:
            self.process.terminate()
            self.process.wait(timeout=30)


def ask(base: str, path: str, body: bytes | None = None, host: str | None = None,
         method: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(base + path, data=body, method=method or ("POST" if body is not None else "GET"))
    if body is not None:
        request.add_header("content-type", "application/json")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def one_line_4xx(status: int, text: str, code: int) -> bool:
    """A 4xx whose JSON detail is one line (no traceback, no echo of a huge input)."""
    try:
        detail = json.loads(text).get("detail")
    except (ValueError, AttributeError):
        return False
    return status == code and isinstance(detail, str) and "\n" not in detail and len(detail) < 400


def ids_in(output: str) -> list[str]:
    """The document ids `search --query` printed ("  1.   12.3456  DOCID  text")."""
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].rstrip(".").isdigit() and line.startswith("  "):
            found.append(parts[2])
    return found


def surface_cases(model: Path, ck: str, step2: str, shared: dict) -> list[Case]:
    """`shared`: "milvus" (MilvusServer), "listener" (Listener), "onnx" (an ONNX export of `ck`), "served"
    (an in-memory index of the tiny SciFact corpus)."""
    milvus, listener = shared["milvus"], shared["listener"]
    repo = lambda: Path(os.environ["HOSTILE_REPO"])  # noqa: E731
    corpus = ["--corpus=beir/corpus.jsonl"]
    index = ["index", f"--model={model}", *corpus, "--output=ix"]
    onnx = ["export", f"--checkpoint={ck}", "--output=onnx", "--format=onnx"]  # how shared["onnx"] was made
    search_onnx = ["index", "--model=onnx", *corpus, "--output=ox"]

    def user_folder(*names: str):
        """A user's folder holding only these subfolders (the names an export of ours holds), with files."""
        def setup(s: Path) -> None:
            for name in names:
                (s / "mine" / name).mkdir(parents=True, exist_ok=True)
                (s / "mine" / name / "notes.txt").write_text("mine")
        return setup

    kept = lambda *names: intact(*(f"mine/{n}/notes.txt" for n in names))  # noqa: E731

    def then(*steps):
        def setup(s: Path) -> None:
            for step in steps:
                step(s)
        return setup

    def cli(*argv):
        def setup(s: Path) -> None:
            code, output = run_cli(repo(), list(argv), s)
            if code != 0:
                raise RuntimeError(f"setup `hybridpqa {' '.join(argv)}` failed: {output[-600:]}")
        return setup

    def drop_qdrant_collection(s: Path) -> None:  # deleted with the client, as someone else would
        from qdrant_client import QdrantClient

        name = json.loads((s / "qx" / "index.json").read_text())["database"]["collection"]
        client = QdrantClient(path=str(s / "qx" / "qdrant"))
        client.delete_collection(name)
        client.close()

    def json_edit(path: str, change):
        def setup(s: Path) -> None:
            data = json.loads((s / path).read_text())
            change(data)
            (s / path).write_text(json.dumps(data))
        return setup

    def corpus_line(record: dict):
        return lambda s: (s / "beir" / "corpus.jsonl").write_text(
            (s / "beir" / "corpus.jsonl").read_text() + json.dumps(record) + "\n")

    def two_corpora(s: Path) -> None:
        """a: 12 documents; b: 24 others, c: 6 others (ids prefixed)."""
        lines = (s / "beir" / "corpus.jsonl").read_text().splitlines()
        (s / "a.jsonl").write_text("\n".join(lines[:12]) + "\n")
        for name, size in (("b", 24), ("c", 6)):
            (s / f"{name}.jsonl").write_text("".join(
                json.dumps({**json.loads(l), "_id": f"{name}-" + json.loads(l)["_id"]}) + "\n" for l in lines[:size]))

    a_ids = lambda s: {json.loads(l)["_id"] for l in (s / "a.jsonl").read_text().splitlines()}  # noqa: E731

    def searched(folder: str, s: Path) -> tuple[int, str]:
        return run_cli(repo(), ["search", f"--index={folder}", "--query=vitamin d"], s)

    def a_still_answers(folder: str):
        """`search` of folder a after b was written: a's own ranking, as before b (or one error), never
        b's documents under a's ids."""
        def check(s: Path, code: int, output: str) -> bool:
            c, out = searched(folder, s)
            before = json.loads((s / "a-before.json").read_text())
            return "Traceback" not in out and ((c == 0 and ids_in(out) == before) or (c == 2 and "error:" in out))
        return check

    def remember(folder: str):
        def setup(s: Path) -> None:
            c, out = searched(folder, s)
            found = ids_in(out)
            if c != 0 or not found or not set(found) <= a_ids(s):
                raise RuntimeError(f"setup: search of {folder} failed: {out[-400:]}")
            (s / "a-before.json").write_text(json.dumps(found))
        return setup

    def milvus_case(name: str, argv_b: list[str], folder_a: str, risk: str, argv_a=(), **kw) -> Case:
        if milvus.url is None:
            return Case(name, ["--version"], expect="correct", check=lambda s, c, o: False, risk="skipped")
        uri = ["--engine=milvus", f"--uri={milvus.url}"]
        return Case(name, ["index", f"--model={model}", *argv_b, *uri], risk=risk,
                    setup=then(two_corpora, cli("index", f"--model={model}", "--corpus=a.jsonl",
                                                f"--output={folder_a}", *uri, *argv_a), remember(folder_a)), **kw)

    def retrained(s: Path) -> None:  # the index's model folder now holds other weights (trained again)
        shutil.rmtree(s / "ck")
        shutil.copytree(s / ck, s / "ck")

    def key_env(case: Case) -> Case:
        case.env = {"QDRANT_API_KEY": SECRET, "MILVUS_TOKEN": SECRET}
        return case

    def no_secret(s, c, o) -> bool:
        return not listener.got_secret()

    def seq_classifier(s: Path) -> None:
        shutil.copytree(model, s / "clf")
        edit(s / "clf" / "config.json", "BertForMaskedLM", "BertForSequenceClassification")

    def swap_graphs(s: Path) -> None:  # the query encoder's graph where the context one's should be
        (s / "onnx" / "query.onnx").rename(s / "onnx" / "tmp.onnx")
        (s / "onnx" / "context.onnx").rename(s / "onnx" / "query.onnx")
        (s / "onnx" / "tmp.onnx").rename(s / "onnx" / "context.onnx")

    def outputs_swapped(m: dict) -> None:
        for graph in m["graphs"].values():
            if isinstance(graph, dict) and isinstance(graph.get("outputs"), list) and len(graph["outputs"]) > 1:
                graph["outputs"][0], graph["outputs"][1] = graph["outputs"][1], graph["outputs"][0]

    def graph_file(value: str):
        def change(m: dict) -> None:
            for graph in m["graphs"].values():
                if isinstance(graph, dict) and "file" in graph:
                    graph["file"] = value
        return change

    def escaped_graph(s: Path) -> None:
        shutil.copy(s / "onnx" / "context.onnx", s / "outside.onnx")

    exported = lambda s: shutil.copytree(shared["onnx"], s / "onnx")  # noqa: E731 - `export --format=onnx` of ck
    onnx_error = lambda name, setup, risk="silent": Case(  # noqa: E731
        name, search_onnx, risk=risk, setup=then(exported, setup), check=lambda s, c, o: not (s / "ox" / "index.json").exists())

    cases = [
        # exports decide ownership by our marker only: a user's folder is never deleted
        Case("export-st-over-user-corpus", ["export", f"--checkpoint={ck}", "--output=mine", "--overwrite"],
             setup=user_folder("corpus"), check=kept("corpus"), risk="data lost"),
        Case("export-st-over-user-dense-sparse", ["export", f"--checkpoint={ck}", "--output=mine", "--overwrite"],
             setup=user_folder("dense", "sparse"), check=kept("dense", "sparse"), risk="data lost"),
        Case("export-pyserini-over-user-corpus", ["export", "--index=ix/sparse", "--output=mine", "--overwrite"],
             setup=then(cli(*index), user_folder("corpus")), check=kept("corpus"), risk="data lost"),
        Case("export-onnx-over-user-folder", [*onnx[:2], "--output=mine", "--format=onnx", "--overwrite"],
             setup=user_folder("graphs"), check=kept("graphs"), risk="data lost"),
        Case("index-over-user-shards", [*index[:3], "--output=mine", "--overwrite"], setup=user_folder("shards"),
             check=kept("shards"), risk="data lost"),
        Case("export-over-other-kind-of-ours", ["export", "--index=ix/sparse", "--output=st", "--overwrite"],
             setup=then(cli(*index), cli("export", f"--checkpoint={ck}", "--output=st")),
             check=lambda s, c, o: "no marker" not in o and (s / "st" / "dense").is_dir(), risk="silent"),
        # a collection belongs to one index (a shared Milvus server)
        milvus_case("milvus-same-folder-name-larger", ["--corpus=b.jsonl", "--output=b/idx1", "--overwrite"],
                    "a/idx1", "data lost", expect="correct", check=a_still_answers("a/idx1")),
        milvus_case("milvus-same-folder-name-smaller", ["--corpus=c.jsonl", "--output=b/idx2", "--overwrite"],
                    "a/idx2", "data lost", expect="correct", check=a_still_answers("a/idx2")),
        milvus_case("milvus-overwrite-foreign-collection", ["--corpus=b.jsonl", "--output=b/idx3", "--overwrite",
                                                            "--collection=idx3_taken"], "a/idx3", "data lost",
                    argv_a=["--collection=idx3_taken"], check=a_still_answers("a/idx3")),
        # credentials only to a URL the user named
        key_env(Case("qdrant-key-to-folder-url", ["search", "--index=qx", "--query=vitamin d"], risk="security",
                     setup=then(cli("index", f"--model={model}", *corpus, "--output=qx", "--engine=qdrant"),
                                json_edit("qx/index.json", lambda m: m["database"].update(uri=listener.url))),
                     check=no_secret)),
        key_env(Case("milvus-token-to-folder-url", ["search", "--index=mx", "--query=vitamin d"], risk="security",
                     setup=then(cli("index", f"--model={model}", *corpus, "--output=mx", "--engine=milvus"),
                                json_edit("mx/index.json", lambda m: m["database"].update(uri=listener.url))),
                     check=no_secret)),
        Case("uri-memory", [*index, "--engine=qdrant", "--uri=:memory:"], risk="data lost",
             check=lambda s, c, o: not (s / "ix" / "index.json").exists()),
        Case("uri-local-path", [*index, "--engine=qdrant", "--uri=elsewhere"], risk="silent",
             check=lambda s, c, o: not (s / "elsewhere").exists()),
        Case("uri-with-engine-memory", [*index, "--engine=memory", "--uri=http://127.0.0.1:1"], risk="silent"),
        Case("collection-with-engine-memory", [*index, "--engine=memory", "--collection=mine"], risk="silent"),
        Case("collection-slash", [*index, "--engine=qdrant", "--collection=a/b"], risk="silent",
             check=lambda s, c, o: not (s / "ix" / "shards").exists()),
        Case("collection-300-chars", [*index, "--engine=qdrant", "--collection=" + "c" * 300], risk="silent",
             check=lambda s, c, o: not (s / "ix" / "shards").exists()),
        Case("qdrant-connection-refused", [*index, "--engine=qdrant", "--uri=http://127.0.0.1:1"], risk="silent"),
        Case("milvus-connection-refused", [*index, "--engine=milvus", "--uri=http://127.0.0.1:1"], risk="silent"),
        Case("qdrant-missing-collection", ["search", "--index=qx", "--query=vitamin d"], risk="silent",
             setup=then(cli("index", f"--model={model}", *corpus, "--output=qx", "--engine=qdrant"),
                        drop_qdrant_collection),
             check=lambda s, c, o: not any((s / "qx" / "qdrant" / "collection").glob("*"))),
        Case("embedded-store-deleted", ["search", "--index=mx", "--query=vitamin d"], risk="silent",
             setup=then(cli("index", f"--model={model}", *corpus, "--output=mx", "--engine=milvus"),
                        lambda s: shutil.rmtree(s / "mx" / "milvus.db"))),
        Case("database-count-mismatch", ["search", "--index=qx", "--query=vitamin d"], risk="silent",
             setup=then(cli("index", f"--model={model}", *corpus, "--output=qx", "--engine=qdrant"),
                        json_edit("qx/docids.json", lambda ids: ids.append("extra")))),
        Case("uri-differs-from-folder", ["search", "--index=qx", "--query=vitamin d", "RETRIEVER.INDEX.URI",
                                         "http://127.0.0.1:1"], risk="silent",
             setup=cli("index", f"--model={model}", *corpus, "--output=qx", "--engine=qdrant")),
        Case("from-index-without-engine", ["index", "--from-index=ix", "--output=iy"], setup=cli(*index),
             check=lambda s, c, o: ("--engine" in o or "--store" in o) and "usage:" not in o, risk="silent"),
        # what an index was built with
        Case("index-model-retrained", ["search", "--index=ix", "--query=vitamin d"], risk="silent",
             setup=then(lambda s: shutil.copytree(s / step2, s / "ck"),
                        cli("index", "--model=ck", *corpus, "--output=ix"), retrained)),
        # ONNX exports
        onnx_error("onnx-swapped-graphs", swap_graphs),
        onnx_error("onnx-outputs-swapped", json_edit("onnx/hybridpqa_onnx.json", outputs_swapped)),
        onnx_error("onnx-graph-escapes", then(escaped_graph, json_edit("onnx/hybridpqa_onnx.json",
                                                                       graph_file("../outside.onnx"))), "security"),
        onnx_error("onnx-graph-absolute", json_edit("onnx/hybridpqa_onnx.json", graph_file("/etc/passwd")), "security"),
        onnx_error("onnx-graph-missing", lambda s: (s / "onnx" / "context.onnx").unlink()),
        onnx_error("onnx-no-encoding", json_edit("onnx/hybridpqa_onnx.json", lambda m: m.pop("encoding"))),
        onnx_error("onnx-no-tokenizer", lambda s: [p.unlink() for p in (s / "onnx").glob("*token*") if p.is_file()]),
        onnx_error("onnx-manifest-not-json", lambda s: (s / "onnx" / "hybridpqa_onnx.json").write_text("{not json")),
        onnx_error("onnx-graph-truncated", lambda s: (s / "onnx" / "context.onnx").write_bytes(
            (s / "onnx" / "context.onnx").read_bytes()[:5000])),
        Case("onnx-with-backend-torch", [*search_onnx, "--backend=torch"], setup=exported,
             check=lambda s, c, o: "onnx" in o.lower() and "export" in o.lower(), risk="silent"),
        Case("onnx-text-options-changed", [*search_onnx, "RETRIEVER.DATA.NORMALIZE", "False"], setup=exported,
             risk="silent"),
        # the types and settings read
        Case("corpus-int-text", index, setup=corpus_line({"_id": "n1", "title": "", "text": 12345}), risk="silent"),
        Case("corpus-list-title", index, setup=corpus_line({"_id": "n1", "title": ["a", "list"], "text": "x"}),
             risk="silent"),
        Case("corpus-int-id", index, setup=corpus_line({"_id": 7, "title": "", "text": "a text"}), risk="silent"),
        Case("sequence-classifier-model", ["index", "--model=clf", *corpus, "--output=ix"], setup=seq_classifier,
             risk="silent"),
        Case("mlm-warmup-on-dense", ["train", "--output=out", "--data=pqa", f"--config={ROOT_CONFIGS / 'quickstart.yaml'}",
                                     "--env=none", "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", str(model),
                                     "RETRIEVER.MODEL.BIENCODER_TYPE", "dense", "RETRIEVER.MODEL.MLM_WARMUP.STEPS", "5"],
             risk="silent", check=lambda s, c, o: not (s / "out" / "quickstart" / "metrics.jsonl").exists()),
        Case("metrics-empty", ["evaluate", "--run=a.trec", "--qrels=q.tsv", "--metrics=,"],
             setup=lambda s: ((s / "a.trec").write_text("q1 Q0 d1 1 2.0 a\n"), (s / "q.tsv").write_text("q1\td1\t1\n")),
             risk="silent"),
        Case("index-under-a-file-message", [*index[:3], "--output=afile/ix"], setup=lambda s: (s / "afile").write_text("x"),
             check=lambda s, c, o: "--output" in o and "--path_output" not in o and "run directory" not in o,
             risk="silent"),
        Case("typo-before-torch", ["train", "--output=out", "--data=pqa", f"--config={ROOT_CONFIGS / 'quickstart.yaml'}",
                                   "NOPE.KEY", "1"], timed=True, check=lambda s, c, o: float(o.split("elapsed ")[-1]) < 4,
             risk="silent"),
    ]
    return cases + serve_cases(str(shared["served"]))


def serve_cases(served: str) -> list[Case]:
    """Cases against a real `serve` process of the index `served` (Case.probe: requests while it runs)."""

    def search(body: bytes, code: int = 422):
        return lambda base: one_line_4xx(*ask(base, "/search", body), code)

    cases = [
        ("serve-host-rebinding", lambda base: ask(base, "/search", b'{"query": "vitamin d"}',
                                                   host="evil.example")[0] in (400, 403, 421), "security", []),
        ("serve-host-rebinding-page", lambda base: ask(base, "/", host="attacker.example:8000")[0] in (400, 403, 421),
         "security", []),
        ("serve-host-loopback-ok", lambda base: ask(base, "/health")[0] == 200, "silent", []),
        ("serve-host-localhost-ok", lambda base: ask(base, "/health", host="localhost")[0] == 200, "silent", []),
        ("serve-allow-host", lambda base: ask(base, "/health", host="search.lab")[0] == 200, "silent",
         ["--allow-host=search.lab"]),
        ("serve-k-1e400", search(b'{"query": "vitamin d", "k": 1e400}'), "silent", []),
        ("serve-k-nan", search(b'{"query": "vitamin d", "k": NaN}'), "silent", []),
        ("serve-lone-surrogate", search(b'{"query": "vitamin \\ud800 d"}'), "silent", []),
        ("serve-encode-surrogate", lambda base: one_line_4xx(*ask(base, "/encode", b'{"texts": ["a \\udfff"]}'), 422),
         "silent", []),
        ("serve-k-too-large", search(b'{"query": "vitamin d", "k": 100000}'), "silent", []),
        ("serve-body-too-large", lambda base: ask(base, "/search", b'{"query": "' + b"a" * 200_000 + b'"}')[0] == 413,
         "silent", []),
        ("serve-not-json", search(b"{not json"), "silent", []),
        ("serve-cors-preflight", lambda base: "access-control-allow-origin" not in ask(
            base, "/search", b"", method="OPTIONS")[1].lower(), "security", []),
    ]
    return [Case(name, ["serve", f"--index={served}", *extra], expect="correct", probe=requests, risk=risk)
            for name, requests, risk, extra in cases] + [
        Case("serve-port-in-use", ["serve", f"--index={served}"], occupy_port=True, risk="silent",
             check=lambda s, c, o: "encoding" not in o and "loaded" not in o.lower()),
        Case("serve-missing-index", ["serve", "--index=nothing"], risk="silent"),
    ]


ROOT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
