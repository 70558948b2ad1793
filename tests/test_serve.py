"""`hybridpqa serve`: the JSON endpoints in-process (FastAPI's test client), then a real server process
on 127.0.0.1 driven by headless chromium (Playwright), a short bounded load, and SIGTERM draining."""
import asyncio
import json
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from HybridPQA.cli import main  # noqa: E402
from HybridPQA.commands.serve import load_indexes  # noqa: E402
from HybridPQA.serving.app import build_app  # noqa: E402
from HybridPQA.serving.process import running_server  # noqa: E402

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium-browser") or "",
                             shutil.which("google-chrome") or "") if p and os.path.isfile(p)), None)


@pytest.fixture(scope="module")
def served(tuned_scifact):
    folder = tuned_scifact / "index" / "test"
    indexes = load_indexes([str(folder)])
    return folder, indexes, TestClient(build_app(indexes, max_k=50, max_body=4096), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def questions(small_beir) -> list[str]:
    return [json.loads(l)["text"] for l in (small_beir / "queries.jsonl").read_text().splitlines()]


def test_search_returns_the_index_ranking_with_the_score_split(served, questions):
    folder, indexes, client = served
    index = indexes["test"]
    for scorer in ("hybrid", "dense", "sparse"):
        got = client.post("/search", json={"query": questions[0], "k": 5, "scorer": scorer}).json()
        want = index.search(questions[0], k=5, scorer=scorer)
        assert [h["id"] for h in got["hits"]] == [d for d, _ in want]
        assert np.allclose([h["score"] for h in got["hits"]], [s for _, s in want], atol=1e-5)
    for hit in got["hits"]:  # sparse: every shown term matches the query; the text is shaded where it matches
        assert hit["terms"] and all(t["weight"] > 0 for t in hit["terms"])
    hybrid = client.post("/search", json={"query": questions[1], "k": 10}).json()
    assert hybrid["scorer"] == "hybrid" and len(hybrid["hits"]) == 10
    for hit in hybrid["hits"]:  # the parts are the hybrid score's (the exact hybrid: over every document)
        assert abs(hit["dense_part"] + hit["sparse_part"] - hit["score"]) < 1e-4
        assert "<mark" in hit["html"] or not hit["terms"]
    assert client.get("/health").json()["indexes"]["test"]["documents"] == len(index)


def test_encode_gives_the_models_vectors(served, questions):
    _, indexes, client = served
    got = client.post("/encode", json={"texts": questions[:3], "side": "query", "top": 5}).json()
    want = indexes["test"].retriever.encode_queries(questions[:3])
    assert np.allclose(np.array(got["dense"]), want.dense, atol=1e-5)
    assert got["sparse"][0] == pytest.approx(want.decode(0, 5), abs=1e-5)
    ids = got["sparse_ids"][1]
    assert ids["ids"] == want.sparse[1].indices.tolist() and np.allclose(ids["weights"], want.sparse[1].data)


def test_explain_page_and_numbers(served, questions):
    _, indexes, client = served
    top = client.post("/search", json={"query": questions[0], "k": 1}).json()["hits"][0]["id"]
    page = client.get("/explain", params={"query": questions[0], "id": top})
    assert page.status_code == 200 and "Matching terms" in page.text and "<mark" in page.text
    numbers = client.post("/explain", json={"query": questions[0], "id": top}).json()
    assert numbers["scores"]["sparse"] > 0 and numbers["matches"]


@pytest.mark.parametrize("method,path,body,status,message", [
    ("post", "/search", {"query": "   "}, 422, "query: empty"),
    ("post", "/search", {"query": "x", "k": 0}, 422, "k = 0"),
    ("post", "/search", {"query": "x", "k": 51}, 422, "from 1 to 50"),
    ("post", "/search", {"query": "x", "scorer": "bm25"}, 422, "scorer 'bm25'"),
    ("post", "/search", {"query": "x", "index": "nope"}, 404, "index 'nope': not served"),
    ("post", "/search", {"query": "x" * 5000}, 413, "over 4096 bytes"),
    ("post", "/search", {"k": 3}, 422, "Field required"),
    ("post", "/encode", {"texts": ["a"], "side": "both"}, 422, "choose query or document"),
    ("post", "/explain", {"query": "x", "id": "no-such-doc"}, 404, "no such document"),
    ("get", "/explain?query=x&id=no-such-doc", None, 404, "no such document"),
])
def test_bad_requests_get_a_4xx_that_says_what_to_fix(served, method, path, body, status, message):
    client = served[2]
    answer = client.post(path, json=body) if method == "post" else client.get(path)
    assert answer.status_code == status and message in json.dumps(answer.json())


@pytest.mark.parametrize("host,status", [("evil.example", 400), ("attacker.example:8000", 400),
                                         ("127.0.0.1:8000", 200), ("localhost", 200), ("search.lab", 200)])
def test_a_request_addressed_to_another_host_is_refused(served, host, status):
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as Host; only the
    bind address, localhost and --allow-host names are answered."""
    indexes = served[1]
    client = TestClient(build_app(indexes, allowed_hosts=("127.0.0.1", "localhost", "search.lab")),
                        base_url="http://127.0.0.1")
    for method, path, body in (("get", "/", None), ("get", "/health", None),
                               ("post", "/search", {"query": "vitamin d", "k": 3})):
        answer = client.request(method.upper(), path, json=body, headers={"host": host})
        assert answer.status_code == status, (method, path, host)
        if status == 400:
            assert "vitamin" not in answer.text and "hits" not in answer.text


def test_by_default_only_loopback_names_are_answered(served):
    client = TestClient(build_app(served[1]), base_url="http://127.0.0.1")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"host": "localhost:8000"}).status_code == 200
    refused = client.post("/search", json={"query": "vitamin d", "k": 3}, headers={"host": "rebound.example"})
    assert refused.status_code == 400 and "hits" not in refused.text


@pytest.mark.parametrize("body,field", [(b'{"query": "x", "k": 1e400}', "k"), (b'{"query": "x", "k": NaN}', "k"),
                                        (b'{"query": "x \\ud800 y"}', "query"),
                                        (b'{"texts": ["a \\udfff"], "side": "query"}', "texts")])
def test_non_finite_numbers_and_lone_surrogates_get_a_one_line_422(served, body, field):
    client = served[2]
    path = "/encode" if b"texts" in body else "/search"
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and field in detail and "\n" not in detail and "1e400" not in detail


def test_concurrent_searches_are_batched_and_each_gets_its_own_hits(served, questions):
    _, indexes, _ = served
    app = build_app(indexes, max_k=50)
    alone = TestClient(app, base_url="http://127.0.0.1")
    want = [alone.post("/search", json={"query": q, "k": 3 + i % 4}).json()["hits"] for i, q in enumerate(questions[:12])]

    async def together():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answers = await asyncio.gather(*[client.post("/search", json={"query": q, "k": 3 + i % 4})
                                             for i, q in enumerate(questions[:12])])
        return [a.json()["hits"] for a in answers]

    got = asyncio.run(together())
    for g, w in zip(got, want):
        assert [h["id"] for h in g] == [h["id"] for h in w]
        assert np.allclose([h["score"] for h in g], [h["score"] for h in w], atol=1e-4)


@pytest.mark.slow
def test_real_server_page_in_a_browser_load_and_sigterm(served, questions, tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium to drive (apt-get install -y chromium); the page was not tested")
    log = (tmp_path / "serve.log").open("w")  # a file, not a pipe that a busy server could fill
    with running_server([str(served[0])], output=log) as (base, process):
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(base + "/")
            page.fill("#q", questions[0])
            page.select_option("#scorer", "hybrid")
            page.click("#go")
            page.wait_for_selector(".hit", timeout=30_000)
            assert page.locator(".hit").count() == 10
            assert page.locator(".hit .split .dense").count() == 10 and page.locator(".hit .split .sparse").count() == 10
            assert "dense" in page.locator(".hit .parts").first.inner_text()
            assert page.locator(".hit .terms span").count() > 0 and page.locator(".hit .text mark").count() > 0
            with page.expect_popup() as opened:
                page.locator("a.explain").first.click()
            explanation = opened.value
            explanation.wait_for_load_state()
            assert "why this score" in explanation.title() and "Matching terms" in explanation.content()
            browser.close()

        errors, latencies, stop = [], [], time.perf_counter() + 2.0

        def client(n: int) -> None:  # a short load: 4 clients for 2 s
            with httpx.Client(base_url=base, timeout=30) as http:
                i = n
                while time.perf_counter() < stop:
                    started = time.perf_counter()
                    answer = http.post("/search", json={"query": questions[i % len(questions)], "k": 10})
                    latencies.append(time.perf_counter() - started)
                    if answer.status_code != 200 or len(answer.json()["hits"]) != 10:
                        errors.append(answer.status_code)
                    i += 4

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert latencies and not errors

        in_flight = {}  # SIGTERM while a request is in flight: it still gets its answer
        request = threading.Thread(target=lambda: in_flight.update(answer=httpx.post(
            base + "/search", json={"query": questions[1], "k": 50}, timeout=30)))
        request.start()
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        request.join(timeout=60)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has drained
        assert in_flight["answer"].status_code == 200 and len(in_flight["answer"].json()["hits"]) == 50
    log.close()
    assert "Finished server process" in (tmp_path / "serve.log").read_text()


def test_a_missing_or_damaged_index_stops_serve_at_start_with_one_line(served, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(served[0], damaged)
    (damaged / "index.json").write_text("{not json")
    for folder, message in [(tmp_path / "missing", "not a search index"), (damaged, "unreadable"),
                            (served[0], "--port=70000: give a port from 1 to 65535")]:
        with pytest.raises(SystemExit) as stopped:  # before any server starts
            main(["serve", f"--index={folder}", "--port=70000" if folder == served[0] else "--port=8999"])
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert stopped.value.code == 2 and len(errors) == 1 and message in errors[0]



def test_hit_pieces_are_kept_by_text_and_bounded(splade_tiny):
    """The service's cache of hit texts' word pieces gives what a fresh tokenizer call gives, shades the
    same spans, and keeps at most its size (least recently shown out first)."""
    from transformers import AutoTokenizer

    from HybridPQA.presentation import highlighted, with_offsets
    from HybridPQA.serving.hits import Pieces

    tokenizer = AutoTokenizer.from_pretrained(splade_tiny)
    texts = ["Batteries last longer in the cold.", "The battery charges in two hours.", "Résumé of a café."]
    pieces = Pieces(size=2)
    first = pieces.encode(tokenizer, texts[:2])
    again = pieces.encode(tokenizer, [texts[1], texts[2]])
    assert (pieces.asked, pieces.found) == (4, 1) and list(pieces.kept) == texts[1:]
    fresh = with_offsets(tokenizer, texts)
    for got, want in zip([*first, again[1]], fresh):
        assert (got["input_ids"] == want["input_ids"]).all() and (got["offset_mapping"] == want["offset_mapping"]).all()
    page = highlighted(texts[1], tokenizer, [("battery", 1.0, 1.0, 1.0), ("hours", 1.0, 0.5, 0.5)], again[0])
    assert page.count("<mark") == 2 and ">battery</mark>" in page and ">hours</mark>" in page
    assert highlighted(texts[2], tokenizer, [("cafe", 1.0, 1.0, 1.0)]).count(">café</mark>") == 1
