"""The HTTP service over saved indexes (FastAPI): a search page at `/` and JSON endpoints.

- `POST /search` {query, k, scorer, index}: the top k hits, each with its text, its hybrid score split
  into dense and sparse parts, and its matching terms (serving.hits);
- `POST /encode` {texts, side, top}: the dense and the sparse vector of each text, the sparse one as
  {term: weight} and as ids and weights (PyTorch or ONNX Runtime, whichever the index's model is);
- `GET /explain?index=&query=&id=`: explain's HTML page for one hit (`POST /explain`: its numbers);
- `GET /health`: the indexes served.

Concurrent searches are batched: requests that arrive while the model is busy are encoded and
searched together (one forward pass for the batch), one batch at a time on one worker thread, which
owns the cores. Input is checked: an empty query, a k outside 1..max_k, an unknown scorer or index,
an unknown document id or a body over `max_body` bytes get a 4xx with one line saying what to fix; so
do non-finite numbers and text that is not valid Unicode (a lone surrogate). A request whose Host
header is not one of `allowed_hosts` (the bind address, localhost, and what `--allow-host` adds) gets
400: a page elsewhere cannot reach the service through a rebound DNS name (DNS rebinding).
"""
from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from HybridPQA.api import SCORERS, SearchIndex
from HybridPQA.errors import InputError
from HybridPQA.evaluation.explain import render_html
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.heads import scorers as scorers_of
from HybridPQA.serving.hits import describe_hits
from HybridPQA.serving.page import render_page

MAX_QUERY = 2000  # characters
MAX_TEXTS = 64  # texts per /encode call


class SearchRequest(BaseModel):
    query: str = Field(max_length=MAX_QUERY)
    k: int = 10
    scorer: str | None = None
    index: str | None = None
    detail: bool = True  # the score split, the matching terms and the shaded text; False: ids, scores, texts


class EncodeRequest(BaseModel):
    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS)
    side: str = "query"
    top: int | None = None
    index: str | None = None


class ExplainRequest(BaseModel):
    query: str = Field(max_length=MAX_QUERY)
    id: str
    index: str | None = None


class Batcher:
    """Searches queued by concurrent requests, run in batches on one worker thread: a batch takes every
    request waiting (up to `size`), grouped by index and scorer, searched at the largest k asked."""

    def __init__(self, size: int = 32):
        self.size, self.queue, self.loop = size, None, None
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybridpqa-search")

    async def search(self, index: SearchIndex, name: str, query: str, k: int, scorer: str, detail: bool) -> list[dict]:
        if self.loop is not asyncio.get_running_loop():  # the queue and its drain belong to one event loop
            self.loop, self.queue = asyncio.get_running_loop(), asyncio.Queue()
            self.drain = self.loop.create_task(self._drain())
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((index, name, query, k, (scorer, detail), done))
        return await done

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < self.size:
                batch.append(self.queue.get_nowait())
            groups: dict[tuple[str, str], list] = {}
            for item in batch:
                groups.setdefault((item[1], item[4]), []).append(item)
            for (_, (scorer, detail)), items in groups.items():
                k = max(item[3] for item in items)
                try:
                    found = await loop.run_in_executor(self.worker, describe_hits, items[0][0],
                                                       [item[2] for item in items], k, scorer, detail)
                except Exception as err:  # noqa: BLE001 - handed to each waiting request, which reports it
                    for item in items:
                        item[5].set_exception(err)
                    continue
                for item, hits in zip(items, found):
                    item[5].set_result(hits[:item[3]])

    def run(self, func, *args):
        """Anything else that uses the model, on the same worker thread."""
        return asyncio.get_running_loop().run_in_executor(self.worker, func, *args)


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def build_app(indexes: dict[str, SearchIndex], max_k: int = 100, max_body: int = 65536, batch: int = 32,
              allowed_hosts: tuple[str, ...] = LOCAL_HOSTS) -> FastAPI:
    """The service over `indexes` ({name: SearchIndex}; the first is the default), answering requests
    whose Host header names one of `allowed_hosts` (others get 400: a page that rebinds its own DNS name to
    this machine cannot read the corpus)."""
    app = FastAPI(title="HybridPQA", docs_url="/docs", redoc_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(dict.fromkeys(allowed_hosts)))
    batcher, default = Batcher(batch), next(iter(indexes))

    def pick(name: str | None) -> tuple[str, SearchIndex]:
        name = name or default
        if name not in indexes:
            raise HTTPException(404, f"index {name!r}: not served; choose one of {', '.join(indexes)}")
        return name, indexes[name]

    def query_text(query: str) -> str:
        if not query.strip():
            raise HTTPException(422, "query: empty; give the text to search for")
        return unicode_text(query, "query")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return JSONResponse({"detail": f"request body over {max_body} bytes; send less"}, status_code=413)
        if length is None and request.method == "POST":
            body = await request.body()  # chunked: read it, within the limit
            if len(body) > max_body:
                return JSONResponse({"detail": f"request body over {max_body} bytes; send less"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(InputError)
    async def input_error(request: Request, err: InputError):
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError):
        """One line naming the field, never echoing the value (it may be inf or a lone surrogate)."""
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.get("/health")
    async def health():
        return {"status": "ok", "indexes": {name: describe(ix) for name, ix in indexes.items()}}

    @app.post("/search")
    async def search(body: SearchRequest):
        name, index = pick(body.index)
        scorer = body.scorer or index.retriever.default_scorer
        if scorer not in served_scorers(index):
            raise HTTPException(422, f"scorer {scorer!r}: this index serves {', '.join(served_scorers(index))}")
        if not 1 <= body.k <= max_k:
            raise HTTPException(422, f"k = {body.k}: give a whole number from 1 to {max_k}")
        hits = await batcher.search(index, name, query_text(body.query), body.k, scorer, body.detail)
        return {"index": name, "query": body.query, "scorer": scorer, "k": body.k, "hits": hits}

    @app.post("/encode")
    async def encode(body: EncodeRequest):
        _, index = pick(body.index)
        if body.side not in ("query", "document"):
            raise HTTPException(422, f"side {body.side!r}: choose query or document")
        if any(len(t) > 20 * MAX_QUERY for t in body.texts) or not all(t.strip() for t in body.texts):
            raise HTTPException(422, f"texts: each must be non-empty and at most {20 * MAX_QUERY} characters")
        for text in body.texts:
            unicode_text(text, "texts")
        if body.top is not None and body.top < 1:
            raise HTTPException(422, f"top = {body.top}: give a whole number >= 1, or leave it out")
        retriever = index.retriever
        side = retriever.encode_queries if body.side == "query" else retriever.encode_documents
        encoded = await batcher.run(side, body.texts)
        out = {"model": retriever.source, "backend": "onnx" if retriever.encoder.model is None else "torch"}
        if encoded.dense is not None:
            out[DENSE] = encoded.dense.tolist()
        if encoded.sparse is not None:
            out[SPARSE] = [encoded.decode(i, body.top) for i in range(encoded.sparse.shape[0])]
            rows = [encoded.sparse[i] for i in range(encoded.sparse.shape[0])]
            out["sparse_ids"] = [{"ids": r.indices.tolist(), "weights": r.data.tolist()} for r in rows]
        return out

    async def explanation(index: SearchIndex, query: str, docid: str):
        unicode_text(docid, "id")
        if docid not in index.rows():
            raise HTTPException(404, f"id {docid!r}: no such document in this index")
        text = (index.texts or {}).get(docid)
        if not text:
            raise HTTPException(404, f"id {docid!r}: the index keeps no text for it, so it cannot be explained")
        return await batcher.run(index.retriever.explain, query_text(query), text)

    @app.get("/explain", response_class=HTMLResponse)
    async def explain_page(query: str, id: str, index: str | None = None):
        _, chosen = pick(index)
        e = await explanation(chosen, query, id)
        e.title = f"{id}: why this score"
        return render_html(e, chosen.retriever.encoder.tokenizer)

    @app.post("/explain")
    async def explain_json(body: ExplainRequest):
        _, chosen = pick(body.index)
        return dataclasses.asdict(await explanation(chosen, body.query, body.id))

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return render_page({name: {**describe(ix), "scorers": served_scorers(ix)} for name, ix in indexes.items()},
                           max_k)

    return app


def unicode_text(text: str, field: str) -> str:
    """`text` if it is valid Unicode (JSON's \\ud800 escapes can give a lone surrogate), else a 422."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(422, f"{field}: not valid Unicode (a lone surrogate); send UTF-8 text") from None
    return text


def served_scorers(index: SearchIndex) -> list[str]:
    return [s for s in SCORERS if s in scorers_of(index.corpus.heads)]


def describe(index: SearchIndex) -> dict:
    return {"model": index.retriever.source, "default_scorer": index.retriever.default_scorer,
            "fusion": index.retriever.fusion.describe(), **index.corpus.describe()}
