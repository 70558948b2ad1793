"""Which database an index's collection lives in, and who may be sent a key: the adapters' registry
(HybridPQA.backends.STORES, `build_database`), opening an index's database (`open_database`: new, or saved and checked), the
default collection name, and the credential rule.

Where the database lives is INDEX.URI: empty = embedded, inside the index folder (Qdrant's local
mode, a Milvus Lite .db file); a URL = a server or a cluster, its key from the environment
(QDRANT_API_KEY, MILVUS_TOKEN), never from a file, and sent only to a URL the user named (`--uri`,
a KEY VALUE pair or their own config, or $QDRANT_URL / $MILVUS_URI): a URL read from an index folder
or a checkpoint gets no key unless it is the one named (`credentials`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from HybridPQA.backends import DATABASES, STORES, load
from HybridPQA.config.validate import COLLECTION_NAME
from HybridPQA.errors import InputError
from HybridPQA.outputs import final_name
from HybridPQA.retrieval.databases.base import VectorDatabase

TOKEN_ENV = {"qdrant": "QDRANT_API_KEY", "milvus": "MILVUS_TOKEN"}
URL_ENV = {"qdrant": "QDRANT_URL", "milvus": "MILVUS_URI"}  # a server the user names in the environment
EMBEDDED = {"qdrant": "qdrant", "milvus": "milvus.db"}  # inside the index folder when INDEX.URI is empty


def build_database(engine: str, uri: str, collection: str, folder: Path, docids: list[str], candidates: int = 200,
                   norm_sample: int = 1000, hybrid: str = "candidates", index_id: str = "",
                   named: tuple[str, ...] = ()) -> VectorDatabase:
    """The adapter of `engine`, connected: embedded in `folder` when `uri` is empty; the key sent only
    to a `named` URL (`credentials`)."""
    if engine not in DATABASES:
        raise InputError(f"RETRIEVER.INDEX.STORE = {engine!r}: choose memory, {' or '.join(DATABASES)}")
    if hybrid == "exact":
        hybrid = "candidates"  # a database cannot score every document: its hybrid is the candidates' union
    if not re.fullmatch(COLLECTION_NAME, collection):
        raise InputError(f"collection {collection[:60]!r}: a collection name is 1 to 255 letters, digits and "
                         "underscores, starting with a letter or underscore; choose another --collection")
    key = credentials(engine, uri, named)
    kind = load(STORES[engine])
    database = kind(uri or str(Path(folder) / EMBEDDED[engine]), collection, docids, candidates, norm_sample, hybrid,
                    index_id, key)
    database.embedded = not uri
    return database


def open_database(settings, folder: Path, docids: list[str], described: dict | None = None,
                  index_id: str = "") -> VectorDatabase:
    """The vector database of the index in `folder`: a new one (`index_id`: the folder's id) where
    `settings` (EngineSettings: RETRIEVER.INDEX.STORE, URI, COLLECTION, ...) name it, or a saved one
    that `described` (index.json's record) names, checked against the folder (`verify`). A saved
    index's URL must be the one the user named, if any (`settings.named_uris`)."""
    folder = Path(folder)
    if described is None:
        collection = settings.collection or default_collection(final_name(folder), index_id)
        return build_database(settings.store, settings.uri, collection, folder, docids, settings.candidates,
                              settings.norm_sample, settings.hybrid, index_id, settings.named_uris)
    where = str(folder / "index.json")
    engine, uri, collection, index_id = (described.get(k) for k in ("engine", "uri", "collection", "id"))
    if engine not in DATABASES or not isinstance(uri, str) or not isinstance(collection, str):
        raise InputError(f"{where}: its database record {described} is not one of ours; index again")
    if not isinstance(index_id, str) or not index_id:
        raise InputError(f"{where}: written before indexes had ids (a collection could not be told from another "
                         "index's); index again, or push it again with `hybridpqa index --from-index`")
    if uri and "://" not in uri:
        raise InputError(f"{where}: database uri {uri!r} is not a server URL; index again")
    named = [u for u in settings.named_uris if u]
    if named and not uri:
        raise InputError(f"{where}: this index's {engine} is embedded in its folder; RETRIEVER.INDEX.URI "
                         f"{named[0]} does not apply to it (drop it)")
    if named and uri and not any(same_uri(uri, u) for u in named):
        raise InputError(f"{where}: the index is on {uri}, you named {named[0]}; search it on the URL it was "
                         "built on, or push it there with `hybridpqa index --from-index`")
    if not uri and not (folder / EMBEDDED[engine]).exists():
        raise InputError(f"{where}: its embedded {engine} ({folder / EMBEDDED[engine]}) is missing; index again")
    database = build_database(engine, uri, collection, folder, docids, settings.candidates, settings.norm_sample,
                              settings.hybrid, index_id, settings.named_uris)
    database.verify(where)
    return database


def default_collection(folder_name: str, index_id: str) -> str:
    """The folder's name and its id: two index folders of one name never share a collection."""
    return f"{collection_name(folder_name)[:200]}_{index_id[:8]}" if index_id else collection_name(folder_name)


def collection_name(folder_name: str) -> str:
    """A collection name both databases accept (letters, digits, underscores; a letter first)."""
    name = re.sub(r"\W", "_", folder_name.strip(".")) or "corpus"
    return name if name[0].isalpha() else f"c_{name}"


def same_uri(a: str, b: str) -> bool:
    """One server: the same scheme, host and port (a trailing slash or a default port aside)."""
    pa, pb = urlsplit(a.strip()), urlsplit(b.strip())
    default = {"http": 80, "https": 443}
    try:
        ports = (pa.port or default.get(pa.scheme), pb.port or default.get(pb.scheme))
    except ValueError:
        return False
    return (pa.scheme.lower(), (pa.hostname or "").lower(), ports[0], pa.path.rstrip("/")) == \
        (pb.scheme.lower(), (pb.hostname or "").lower(), ports[1], pb.path.rstrip("/"))


def credentials(engine: str, uri: str, named: tuple[str, ...]) -> str | None:
    """The API key or token of a database server, from the environment only, and only for a URL the
    user named (`named`: in this command, a KEY VALUE pair or their own config; or $QDRANT_URL / $MILVUS_URI)."""
    key = os.environ.get(TOKEN_ENV[engine]) or None
    if not uri or key is None:
        return None
    trusted = [*named, os.environ.get(URL_ENV[engine], "")]
    if any(u and same_uri(uri, u) for u in trusted):
        return key
    raise InputError(f"{uri}: ${TOKEN_ENV[engine]} is set, and this URL comes from a saved file, not from you; "
                     f"name it (--uri={uri}, RETRIEVER.INDEX.URI {uri}, or ${URL_ENV[engine]}) to send the key there, "
                     f"or unset ${TOKEN_ENV[engine]}")
