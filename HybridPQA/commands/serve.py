"""Serve saved indexes over HTTP: a search page at / and JSON endpoints (/search, /encode, /explain,
/health), with uvicorn.

Usage:
  hybridpqa serve --index=DIR... [--host=HOST] [--port=PORT] [--allow-host=NAME]... [--max-k=K] [--max-body=BYTES] [--settings=FILE] [<KEY_VALUE>...]
  hybridpqa serve -h | --help

Options:
  --index=DIR       an index of `hybridpqa index` (in memory or in a vector database); repeat it to serve
                    several (e.g. one corpus in memory and in Qdrant), chosen on the page by folder name
  --host=HOST       the address to listen on; the default serves this machine only [default: 127.0.0.1]
  --port=PORT       [default: 8000]
  --allow-host=NAME  a host name a request may be addressed to (its Host header), beside the bind address
                    and localhost; repeat it for several. Any other gets 400, which keeps a web page that
                    rebinds its own DNS name to this machine from reading the corpus
  --max-k=K         the most hits one request may ask for [default: 100]
  --max-body=BYTES  the largest request body accepted [default: 65536]
  --settings=FILE   search settings (RETRIEVER.INDEX keys) from a YAML file, as in `search`

KEY VALUE pairs override each index's config, as in `search` (e.g. RETRIEVER.INDEX.HYBRID candidates).
The port is checked first, then each index is loaded and checked before the server starts: a port in
use, or a missing or damaged index, stops it with one line. SIGTERM (or Ctrl-C) stops accepting connections and lets the requests in flight finish. Several
`serve` processes can share an index in memory or on a database server; an embedded database (in the
index folder) is opened by one process at a time.

Examples:
  hybridpqa serve --index=output/scifact-index
  curl -s localhost:8000/search -H 'content-type: application/json' -d '{"query": "statins and dementia", "k": 3}'
"""
from __future__ import annotations

import logging
from pathlib import Path

from HybridPQA.commands.common import parse, positive_int
from HybridPQA.config import search_settings
from HybridPQA.errors import InputError

log = logging.getLogger(__name__)


def load_indexes(folders: list[str], overrides: list[str] = ()) -> dict:
    """{name: SearchIndex}, named by folder (made unique), each loaded and ready to search."""
    from HybridPQA.api import SearchIndex

    indexes = {}
    for folder in folders:
        name = base = Path(folder).resolve().name
        n = 1
        while name in indexes:
            n += 1
            name = f"{base}-{n}"
        index = SearchIndex.load(folder, overrides=list(overrides))
        index.corpus.ready((index.retriever.default_scorer,))  # approximate engines: built now, not on a request
        indexes[name] = index
    return indexes


def serve(folders: list[str], host: str = "127.0.0.1", port: int = 8000, max_k: int = 100, max_body: int = 65536,
          overrides: list[str] = (), allow_hosts: list[str] = ()) -> None:
    try:
        import uvicorn

        from HybridPQA.serving.app import LOCAL_HOSTS, build_app
    except ImportError:
        raise InputError("hybridpqa serve needs fastapi and uvicorn: pip install 'HybridPQA[serve]'") from None
    from HybridPQA.runtime import bound_kernel_cache, setup_logging

    bound_kernel_cache()  # before any bf16 kernel is built
    setup_logging(None)
    check_port(host, port)  # before minutes of loading
    indexes = load_indexes(folders, overrides)
    allowed = (*LOCAL_HOSTS, *([] if host in ("0.0.0.0", "::") else [host]), *allow_hosts)
    if host in ("0.0.0.0", "::") and not allow_hosts:
        log.warning("serving on every interface: requests are answered only for Host %s; name this machine's "
                    "names with --allow-host", ", ".join(allowed))
    try:
        uvicorn.run(build_app(indexes, max_k, max_body, allowed_hosts=allowed), host=host, port=port,
                    log_level="info", timeout_graceful_shutdown=30)
    finally:
        for index in indexes.values():
            index.close()


def check_port(host: str, port: int) -> None:
    """A one-line error now if `host:port` cannot be listened on (in use, or not this machine's)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise InputError(f"--host={host}: not an address of this machine ({err.strerror}); give 127.0.0.1 or "
                         "0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a TIME_WAIT port is free
        try:
            probe.bind(address)
        except OSError as err:
            raise InputError(f"--port={port}: cannot listen on {host}:{port} ({err.strerror}); another server "
                             "holds it: stop it or choose another --port") from None


def main(argv: list[str] | None = None) -> None:
    args = parse(__doc__, argv, "serve")
    port = positive_int(args["--port"], "--port")
    if port > 65535:
        raise InputError(f"--port={port}: give a port from 1 to 65535")
    serve(args["--index"], args["--host"], port, positive_int(args["--max-k"], "--max-k"),
          positive_int(args["--max-body"], "--max-body"),
          [*(search_settings(args["--settings"]) if args["--settings"] else []), *args["<KEY_VALUE>"]], args["--allow-host"])
