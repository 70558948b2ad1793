"""Indexes in vector databases: Qdrant in its local mode and Milvus through a real `milvus-lite server`
process on 127.0.0.1, each holding the trained SciFact-slice hybrid's index, searched against the
exact in-memory index."""
import json
import shutil
import socket
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from HybridPQA.api import SearchIndex
from HybridPQA.cli import main
from HybridPQA.errors import InputError
from HybridPQA.retrieval.corpus import CorpusIndex
from HybridPQA.retrieval.databases import build_database
from HybridPQA.retrieval.databases.base import check_batch, corpus_batches, push
from HybridPQA.retrieval.engines import EngineSettings
from HybridPQA.scoring import Fusion

pytest.importorskip("qdrant_client")
pytest.importorskip("pymilvus")


def overlap(got: dict, want: dict, k: int) -> float:
    return float(np.mean([len(set(list(got[q])[:k]) & set(list(want[q])[:k])) / min(k, len(want[q])) for q in want]))


@pytest.fixture(scope="module")
def memory_index(tuned_scifact) -> Path:
    return tuned_scifact / "index" / "test"


@pytest.fixture(scope="module")
def queries(memory_index, small_beir):
    loaded = SearchIndex.load(memory_index)
    lines = (small_beir / "queries.jsonl").read_text().splitlines()[:12]  # Qdrant's local mode is pure Python: few
    texts = {json.loads(l)["_id"]: json.loads(l)["text"] for l in lines}
    return loaded, texts, loaded.retriever.encode_queries(list(texts.values())).reps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """A real Milvus Lite gRPC server on loopback, stopped after the module."""
    if shutil.which("milvus-lite") is None:
        pytest.skip("milvus-lite is not installed (pip install 'HybridPQA[databases]'), so no server can start")
    port, data = free_port(), tmp_path_factory.mktemp("milvus-server")
    process = subprocess.Popen(["milvus-lite", "server", "--data-dir", str(data), "--host", "127.0.0.1",
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):  # bounded: 30 s
            if process.poll() is not None:
                pytest.skip(f"milvus-lite server exited at start: {process.stderr.read().decode()[-300:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.skip("milvus-lite server did not listen within 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["qdrant", "milvus"])
def test_embedded_database_holds_the_index_and_searches_as_the_exact_one(engine, memory_index, queries, tmp_path):
    loaded, texts, q = queries
    out = tmp_path / engine
    main(["index", f"--from-index={memory_index}", f"--output={out}", f"--engine={engine}"])
    meta = json.loads((out / "index.json").read_text())
    index_id = meta["id"]  # the collection carries the folder's id, and its default name is derived from it
    assert meta["database"] == {"engine": engine, "uri": "", "collection": f"{engine}_{index_id[:8]}",
                                "documents": len(loaded), "id": index_id}
    moved = tmp_path / "moved"  # an embedded database lives in the index folder, which may move
    out.rename(moved)
    pushed = SearchIndex.load(moved)
    assert pushed.corpus.count() == len(loaded) and pushed.corpus.docids == loaded.corpus.docids
    qids = list(texts)
    exact = loaded.corpus.search(q, qids, loaded.retriever.fusion, 100)
    candidates = CorpusIndex(loaded.corpus.indexes, EngineSettings(hybrid="candidates")) \
        .search(q, qids, loaded.retriever.fusion, 10)
    got = pushed.corpus.search(q, qids, pushed.retriever.fusion, 100)
    for head in ("dense", "sparse"):  # each head is exact in both databases
        assert overlap(got[head], exact[head], 100) == 1.0
        first = qids[0]
        assert np.allclose(list(got[head][first].values())[:10], list(exact[head][first].values())[:10], atol=1e-4)
    assert overlap(got["hybrid"], exact["hybrid"], 10) >= 0.99
    for qid in qids:  # the same candidate hybrid as in memory: the same fused scores
        want = list(candidates["hybrid"][qid].values())
        assert np.allclose(want, list(got["hybrid"][qid].values())[:10], atol=1e-3)
    pushed.close()


@pytest.mark.slow
@pytest.mark.parametrize("fusion", [Fusion("rrf", rrf_k=60), Fusion("linear", "min-max", 0.4)])
def test_qdrant_fuses_inside_the_engine_as_the_candidate_hybrid_does(fusion, queries, tmp_path):
    loaded, texts, q = queries
    qids = list(texts)
    database = build_database("qdrant", "", "c", tmp_path, loaded.corpus.docids)
    push(database, corpus_batches(loaded.corpus, 100), 64)
    want = CorpusIndex(loaded.corpus.indexes, EngineSettings(hybrid="candidates")).search(q, qids, fusion, 10)
    got = database.search(q, qids, fusion, 10, ("hybrid",))
    assert overlap(got["hybrid"], want["hybrid"], 10) >= 0.99
    database.hybrid = "native"  # Qdrant's own RRF over the two heads' lists: runs, and differs
    native = database.search(q, qids, fusion, 10, ("hybrid",))
    assert all(len(native["hybrid"][qid]) == 10 for qid in qids)
    database.close()


@pytest.mark.slow
def test_milvus_server_process_holds_an_index_encoded_into_it(milvus_server, tuned_scifact, small_beir, queries,
                                                               tmp_path, capsys):
    loaded, texts, q = queries
    checkpoint = json.loads((tuned_scifact / "index" / "test" / "index.json").read_text())["model"]
    out = tmp_path / "served"
    main(["index", f"--model={checkpoint}", f"--corpus={small_beir / 'corpus.jsonl'}", f"--output={out}",
          "--engine=milvus", f"--uri={milvus_server}", "--shard-size=128"])  # three shards streamed in
    index = SearchIndex.load(out)
    assert index.corpus.count() == len(loaded)
    qids = list(texts)
    exact = loaded.corpus.search(q, qids, loaded.retriever.fusion, 10)
    got = index.search(texts, k=10)
    assert overlap(got, exact["hybrid"], 10) >= 0.99
    capsys.readouterr()
    collection = json.loads((out / "index.json").read_text())["database"]["collection"]
    assert collection.startswith("served_")
    for overwrite in ([], ["--overwrite"]):  # another index folder never replaces this index's collection
        with pytest.raises(SystemExit):
            main(["index", f"--from-index={tuned_scifact / 'index' / 'test'}", f"--output={tmp_path / 'other'}",
                  "--engine=milvus", f"--uri={milvus_server}", f"--collection={collection}", *overwrite])
        assert f"collection {collection!r} belongs to another index" in capsys.readouterr().err
    assert SearchIndex.load(out).corpus.count() == len(loaded)
    index.corpus.hybrid = "native"  # Milvus's own hybrid_search
    native = index.corpus.search(q, qids, index.retriever.fusion, 10, ("hybrid",))
    assert 0.2 < overlap(native["hybrid"], exact["hybrid"], 10) < 1.0
    index.close()


def test_milvus_stores_a_collapsed_document_and_counts_it(queries, tmp_path, caplog):
    loaded, texts, q = queries
    sparse, dense = loaded.corpus.indexes["sparse"].by_doc.copy().tolil(), loaded.corpus.indexes["dense"].vectors
    sparse[3, :] = 0  # the model gave document 3 no sparse term
    sparse = sp.csr_matrix(sparse)
    sparse.eliminate_zeros()
    database = build_database("milvus", "", "c", tmp_path, loaded.corpus.docids)
    counts = push(database, iter([(np.arange(len(loaded)), sparse, np.asarray(dense))]), 128)
    assert counts == {"documents": len(loaded), "collapsed_sparse": 1} and "have no sparse term" in caplog.text
    assert "Traceback" not in caplog.text and "Method not implemented" not in caplog.text  # Milvus Lite's probes
    assert database.vectors(np.array([3]))[0].nnz == 0  # read back as empty
    rows, scores = database.head_search("dense", np.asarray(dense[3:4]), 1)
    assert rows[0, 0] == 3  # still found by its dense vector
    database.close()


def test_bad_vectors_and_foreign_collections_are_refused(queries, memory_index, tmp_path, capsys):
    loaded = queries[0]
    docs = loaded.corpus.indexes["sparse"].by_doc[:4].copy()
    with pytest.raises(InputError, match="collection.s are over 10"):
        check_batch(np.arange(4), docs, None, 10, None, "x")
    with pytest.raises(InputError, match="128-d"):
        check_batch(np.arange(4), docs, np.zeros((4, 8), np.float32), docs.shape[1], 128, "x")
    negative = docs.copy()
    negative.data[0] = -1.0
    with pytest.raises(InputError, match="must be finite and >= 0"):
        check_batch(np.arange(4), negative, None, docs.shape[1], None, "x")
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "q"))  # someone else's collection in the same database
    client.create_collection("theirs", vectors_config={"v": models.VectorParams(size=4, distance=models.Distance.DOT)})
    client.close()
    database = build_database("qdrant", str(tmp_path / "q"), "theirs", tmp_path, loaded.corpus.docids,
                              index_id="0123456789abcdef")
    with pytest.raises(InputError, match="not one HybridPQA wrote"):
        push(database, corpus_batches(loaded.corpus, 100), 64)
    with pytest.raises(InputError, match="not this index's; left alone"):
        database.drop()
    assert database.exists()
    database.close()
    for argv, message in [(["index", f"--from-index={tmp_path}", f"--output={tmp_path / 'x'}", "--engine=memory"],
                           "--store=qdrant or --store=milvus"),
                          (["index", f"--from-index={memory_index}", f"--output={tmp_path / 'x'}", "--engine=redis"],
                           "--store=redis: choose memory, qdrant, milvus"),
                          (["search", f"--index={memory_index}", "--query=x", "RETRIEVER.INDEX.HYBRID", "native"],
                           "RETRIEVER.INDEX.HYBRID = 'native' is a vector database's own fusion")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err


def test_a_collection_belongs_to_one_index_and_a_half_made_one_is_taken_back(queries, tmp_path):
    """Ids, not names: another index's collection is never replaced or read as this one's, and a
    collection left by a run killed right after creating it is recognised by its id and rebuilt."""
    loaded = queries[0]
    docids, ours, theirs = loaded.corpus.docids, "a" * 16, "b" * 16

    def opened(index_id: str, collection: str = "shared"):
        return build_database("qdrant", "", collection, tmp_path, docids, index_id=index_id)

    database = opened(ours)
    push(database, corpus_batches(loaded.corpus, 100), 64)
    database.verify("a/index.json")
    database.close()
    other = opened(theirs)  # another index folder that named the same collection
    with pytest.raises(InputError, match=f"belongs to another index \\(id {ours}\\)"):
        push(other, corpus_batches(loaded.corpus, 100), 64)
    with pytest.raises(InputError, match="not this index's; left alone"):
        other.drop()
    with pytest.raises(InputError, match=f"now holds index {ours}, not this index \\({theirs}\\)"):
        other.verify("b/index.json")
    assert other.count() == len(docids)  # untouched
    other.close()
    half = opened(ours, "half")  # killed after creating its collection (marked in the same call), before writing
    half.create(loaded.corpus.indexes["sparse"].by_doc.shape[1], loaded.corpus.indexes["dense"].vectors.shape[1])
    half.close()
    again = opened(ours, "half")
    with pytest.raises(InputError, match="holds 0 documents, the index 341"):
        again.verify("a/index.json")
    push(again, corpus_batches(loaded.corpus, 100), 64)  # the rerun takes it back
    again.verify("a/index.json")
    again.close()


def test_default_collections_of_two_folders_of_one_name_differ(tmp_path):
    from HybridPQA.outputs import id_of, mark
    from HybridPQA.retrieval.databases import default_collection

    names = []
    for parent in ("a", "b"):
        folder = tmp_path / parent / "idx"
        mark(folder, "index")
        names.append(default_collection(folder.name, id_of(folder)))
    assert names[0] != names[1] and all(n.startswith("idx_") for n in names)


class _Listener:
    """An HTTP server on 127.0.0.1 recording each request's headers (it answers 503)."""

    def __init__(self):
        import http.server
        import threading

        self.seen = seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                seen.append(str(self.headers))
                self.send_response(503)
                self.end_headers()

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_key_goes_only_to_a_url_the_user_named(memory_index, tmp_path, monkeypatch, capsys):
    """A shared or downloaded index folder whose index.json names another URL must not collect the
    user's QDRANT_API_KEY: the URL read from a folder gets the key only when the user names it."""
    secret = "key-for-my-own-qdrant-0451"
    out = tmp_path / "qx"
    main(["index", f"--from-index={memory_index}", f"--output={out}", "--engine=qdrant"])
    meta = json.loads((out / "index.json").read_text())
    listener = _Listener()
    try:
        meta["database"]["uri"] = listener.url  # the folder now points at someone's server
        (out / "index.json").write_text(json.dumps(meta))
        monkeypatch.setenv("QDRANT_API_KEY", secret)
        capsys.readouterr()
        with pytest.raises(SystemExit):
            main(["search", f"--index={out}", "--query=vitamin d"])
        err = capsys.readouterr().err
        assert "$QDRANT_API_KEY is set, and this URL comes from a saved file" in err and listener.url in err
        assert not any(secret in h for h in listener.seen)
        with pytest.raises(SystemExit):  # named by the user: the key goes there (this listener is no Qdrant)
            main(["search", f"--index={out}", "--query=vitamin d", "RETRIEVER.INDEX.URI", listener.url])
        assert any(secret in h for h in listener.seen)
        err = capsys.readouterr().err
        assert "Traceback" not in err and [line[:6] for line in err.splitlines() if line.startswith("error:")] == ["error:"]
    finally:
        listener.close()


@pytest.mark.slow
def test_an_index_killed_while_writing_its_collection_is_taken_back_by_a_rerun(milvus_server, memory_index,
                                                                              small_beir, tmp_path):
    """kill -9 once the collection exists on the server (created and marked in one call): it carries
    the folder's id, so the same command again takes it back and completes; nothing is left unmarked."""
    from pymilvus import MilvusClient

    checkpoint = json.loads((memory_index / "index.json").read_text())["model"]
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "HybridPQA.cli", "index", f"--model={checkpoint}",
            f"--corpus={small_beir / 'corpus.jsonl'}", f"--output={out}", "--engine=milvus", f"--uri={milvus_server}",
            "--shard-size=32", "NUM_THREADS", "1"]
    client = MilvusClient(uri=milvus_server)
    before = set(client.list_collections())
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, made = time.time() + 300, []
    while time.time() < deadline and process.poll() is None and not made:
        made = [c for c in client.list_collections() if c.startswith("killed_") and c not in before]
        time.sleep(0.02)
    assert process.poll() is None and made, "the index finished before its collection could be caught"
    process.send_signal(signal.SIGKILL)
    process.wait()
    from HybridPQA.outputs import id_of

    mark = json.loads(client.describe_collection(made[0])["properties"]["hybridpqa"])
    assert mark["id"] == id_of(out) and not (out / "index.json").exists()  # marked from its creation on
    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)  # no --overwrite: it is resumed
    assert again.returncode == 0, again.stderr[-2000:]
    index = SearchIndex.load(out)
    assert index.corpus.collection == made[0] and index.corpus.count() == len(index.corpus.docids)
    index.close()


def test_limits_of_the_database_are_checked_before_encoding(splade_tiny, tmp_path, monkeypatch):
    from HybridPQA import HybridRetriever

    retriever = HybridRetriever.from_pretrained(splade_tiny, ["RETRIEVER.INDEX.ENGINE", "milvus"])
    monkeypatch.setattr(retriever.encoder, "encode", lambda *a, **k: pytest.fail("encoded before the check"))
    with pytest.raises(InputError, match="longer than Milvus's 512-byte limit"):
        SearchIndex.build(retriever, {"d" * 600: "a document", "d2": "another"}, output=tmp_path / "ix")


@pytest.mark.parametrize("engine,words", [
    ("qdrant", ["http://127.0.0.1:1: qdrant could not open collection 'c'", "check the server and RETRIEVER.INDEX.URI"]),
    ("milvus", ["http://127.0.0.1:1: cannot open Milvus", "start the server or check RETRIEVER.INDEX.URI"])])
def test_a_refused_connection_is_one_line_naming_the_url_and_the_collection(engine, words, tmp_path):
    with pytest.raises(InputError) as raised:
        build_database(engine, "http://127.0.0.1:1", "c", tmp_path, ["d1"], index_id="0" * 16).claimable()
    assert all(w in str(raised.value) for w in words) and "\n" not in str(raised.value), raised.value
