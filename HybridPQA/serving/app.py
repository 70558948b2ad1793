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

import dataclasses

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from HybridPQA.api import SearchIndex, check_request
from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.presentation import render_html
from HybridPQA.serving.batching import Batcher
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


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class Chosen:
    """The FastAPI dependencies that choose what a request asks of: the index (404 if not served) and,
    for a search, the checked request (api.check_request: k, scorer, query; 422 with its line)."""

    def __init__(self, indexes: dict[str, SearchIndex], max_k: int):
        self.indexes, self.max_k, self.default = indexes, max_k, next(iter(indexes))

    def index(self, name: str | None) -> tuple[str, SearchIndex]:
        name = name or self.default
        if name not in self.indexes:
            raise HTTPException(404, f"index {name!r}: not served; choose one of {', '.join(self.indexes)}")
        return name, self.indexes[name]

    def search(self, body: SearchRequest):
        name, index = self.index(body.index)
        try:
            request = check_request(unicode_text(body.query, "query"), body.k, body.scorer, index.scorers,
                                    index.retriever.default_scorer, self.max_k, "query")
        except InputError as err:
            raise HTTPException(422, str(err)) from None
        return name, index, request, body

    def named(self, index: str | None = None) -> tuple[str, SearchIndex]:
        return self.index(index)


def build_app(indexes: dict[str, SearchIndex], max_k: int = 100, max_body: int = 65536, batch: int = 32,
              allowed_hosts: tuple[str, ...] = LOCAL_HOSTS) -> FastAPI:
    """The service over `indexes` ({name: SearchIndex}; the first is the default), answering requests
    whose Host header names one of `allowed_hosts` (others get 400: a page that rebinds its own DNS name to
    this machine cannot read the corpus)."""
    app = FastAPI(title="HybridPQA", docs_url="/docs", redoc_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(dict.fromkeys(allowed_hosts)))
    app.middleware("http")(body_limit(max_body))
    app.add_exception_handler(InputError, input_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    batcher, chosen = Batcher(batch), Chosen(indexes, max_k)

    @app.get("/health")
    async def health():
        return {"status": "ok", "indexes": {name: describe(ix) for name, ix in indexes.items()}}

    @app.post("/search")
    async def search(picked: tuple = Depends(chosen.search)):
        name, index, request, body = picked
        hits = await batcher.search(index, name, body.query, request.k, request.scorer, body.detail)
        # plain JSON types already: FastAPI's jsonable_encoder walk cost ~1 ms of the event loop per detailed answer
        return JSONResponse({"index": name, "query": body.query, "scorer": request.scorer, "k": request.k, "hits": hits})

    @app.post("/encode")
    async def encode(body: EncodeRequest):
        _, index = chosen.index(body.index)
        return await batcher.run(encoded, index, check_encode(body))

    async def explanation(index: SearchIndex, query: str, docid: str):
        unicode_text(docid, "id")
        if docid not in index.rows():
            raise HTTPException(404, f"id {docid!r}: no such document in this index")
        if not query.strip():
            raise HTTPException(422, "query: empty; give the text to search for")
        if not (index.texts or {}).get(docid):
            raise HTTPException(404, f"id {docid!r}: the index keeps no text for it, so it cannot be explained")
        return await batcher.run(index.explain, unicode_text(query, "query"), docid)

    @app.get("/explain", response_class=HTMLResponse)
    async def explain_page(query: str, id: str, picked: tuple = Depends(chosen.named)):
        e = await explanation(picked[1], query, id)
        e.title = f"{id}: why this score"
        return render_html(e, picked[1].retriever.encoder.tokenizer)

    @app.post("/explain")
    async def explain_json(body: ExplainRequest):
        return dataclasses.asdict(await explanation(chosen.index(body.index)[1], body.query, body.id))

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return render_page({name: {**describe(ix), "scorers": ix.scorers} for name, ix in indexes.items()}, max_k)

    return app


def body_limit(max_body: int):
    """A middleware refusing a request body over `max_body` bytes (413), chunked ones included."""
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return JSONResponse({"detail": f"request body over {max_body} bytes; send less"}, status_code=413)
        if length is None and request.method == "POST":
            body = await request.body()  # chunked: read it, within the limit
            if len(body) > max_body:
                return JSONResponse({"detail": f"request body over {max_body} bytes; send less"}, status_code=413)
        return await call_next(request)
    return limit_body


async def input_error(request: Request, err: InputError):
    return JSONResponse({"detail": str(err)}, status_code=400)


async def invalid_request(request: Request, err: RequestValidationError):
    """One line naming the field, never echoing the value (it may be inf or a lone surrogate)."""
    first = err.errors()[0] if err.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)


def check_encode(body: EncodeRequest) -> EncodeRequest:
    if body.side not in ("query", "document"):
        raise HTTPException(422, f"side {body.side!r}: choose query or document")
    if any(len(t) > 20 * MAX_QUERY for t in body.texts) or not all(t.strip() for t in body.texts):
        raise HTTPException(422, f"texts: each must be non-empty and at most {20 * MAX_QUERY} characters")
    for text in body.texts:
        unicode_text(text, "texts")
    if body.top is not None and body.top < 1:
        raise HTTPException(422, f"top = {body.top}: give a whole number >= 1, or leave it out")
    return body


def encoded(index: SearchIndex, body: EncodeRequest) -> dict:
    """/encode's answer: each text's dense vector and sparse one, as {term: weight} and as ids and weights."""
    retriever = index.retriever
    vectors = (retriever.encode_queries if body.side == "query" else retriever.encode_documents)(body.texts)
    out = {"model": retriever.source, "backend": "onnx" if retriever.encoder.model is None else "torch"}
    if vectors.dense is not None:
        out[DENSE] = vectors.dense.tolist()
    if vectors.sparse is not None:
        out[SPARSE] = [vectors.decode(i, body.top) for i in range(vectors.sparse.shape[0])]
        rows = [vectors.sparse[i] for i in range(vectors.sparse.shape[0])]
        out["sparse_ids"] = [{"ids": r.indices.tolist(), "weights": r.data.tolist()} for r in rows]
    return out


def unicode_text(text: str, field: str) -> str:
    """`text` if it is valid Unicode (JSON's \\ud800 escapes can give a lone surrogate), else a 422."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(422, f"{field}: not valid Unicode (a lone surrogate); send UTF-8 text") from None
    return text


def describe(index: SearchIndex) -> dict:
    return {"model": index.retriever.source, "default_scorer": index.retriever.default_scorer,
            "fusion": index.fusion.describe(), **index.corpus.describe()}
