"""A model loaded for inference (`HybridRetriever`): encode texts, score documents, explain a score,
export the model. Loading is modeling.pretrained.SavedModel's (every kind of model folder), and
every call applies the model's saved encoding settings and its fusion, so scores are those
`hybridpqa evaluate` ranks with. Indexing and searching a corpus is api.search_index.SearchIndex.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from HybridPQA.data.corpus import check_texts
from HybridPQA.data.text import TextOptions
from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic
from HybridPQA.heads import DENSE, HEADS, HYBRID, SPARSE
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.explain import Explanation, explain_pair
from HybridPQA.modeling.kinds import ModelKind
from HybridPQA.modeling.manifest import CONFIG_FILE
from HybridPQA.modeling.pretrained import SavedModel
from HybridPQA.retrieval.engines import EngineSettings, build_engine_settings
from HybridPQA.scoring import Fusion

from HybridPQA.api.request import check_scorer

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Texts encoded by one side: `reps` {head: vectors} as heads.HEADS keeps them; `terms[v]` names
    sparse column v. `dense` (N, D) float32 numpy and `sparse` (N, V) CSR are views of them."""

    reps: dict
    terms: list[str]

    @property
    def dense(self) -> np.ndarray | None:
        return self.reps[DENSE].numpy() if DENSE in self.reps else None

    @property
    def sparse(self) -> sp.csr_matrix | None:
        return self.reps.get(SPARSE)

    def decode(self, row: int = 0, top: int | None = None) -> dict[str, float]:
        """{term: weight} of row `row`'s sparse vector, largest first."""
        if self.sparse is None:
            raise InputError("this model has no sparse head, so there are no terms to decode")
        vec = self.sparse[row]
        order = np.argsort(-vec.data, kind="stable")[:top]
        return {self.terms[vec.indices[i]]: float(vec.data[i]) for i in order}


class HybridRetriever:
    """A bi-encoder (hybrid, dense or sparse): its encoder (modeling.encode.Encoder: the model with its
    encoding settings and text options), its fusion, and the scorer it searches with unless told
    (`default_scorer`: what the model was trained for, `kind` says)."""

    def __init__(self, encoder: Encoder, fusion: Fusion, source: str = "", overrides: list[str] = (),
                 engines: EngineSettings | None = None, config: str | None = None,
                 kind: ModelKind = ModelKind("checkpoint"), identity: str | None = None):
        if not {DENSE, SPARSE} & set(encoder.heads):
            heads = sorted(encoder.heads)
            raise InputError(f"{source}: HybridRetriever serves dense / sparse / hybrid bi-encoders; this model has "
                             f"{heads or 'no neural heads'} (use `hybridpqa evaluate` for BM25, cross-encoders "
                             "and late interaction)")
        self.encoder, self.fusion, self.source, self.overrides = encoder, fusion, source, list(overrides)
        self.engines = engines or EngineSettings()  # RETRIEVER.INDEX: the engine of each head when searching
        self.config = config  # the merged config, saved with an index so search rebuilds the same model
        self.terms = encoder.terms() if SPARSE in encoder.heads else []
        self.kind = kind
        self.identity = identity  # the sha256 of the weights' own (None: a hub model): an index records it
        self.default_scorer, self.why = kind.default_scorer(encoder.heads)

    @property
    def encoding(self):
        return self.encoder.encoding

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path, overrides: list[str] = (),
                        config: str | Path | None = None, backend: str | None = None,
                        trust_config: bool = True) -> HybridRetriever:
        """A HybridPQA checkpoint, or any masked LM (a folder or a hub name) used zero-shot with the
        defaults, `config` and `overrides` (KEY VALUE pairs, as on the command line). The folder of
        `hybridpqa export --format=onnx` encodes in ONNX Runtime, with no PyTorch model (`backend`
        "onnx" says it must be one; None: whichever the folder is). `trust_config`: `config` is the
        user's own, so a database URL in it may get the key from the environment (an index folder's
        config is not)."""
        saved = SavedModel(path_or_name, backend)
        cfg = saved.config(config, list(overrides))
        named = cfg if trust_config and (config is not None or saved.format == "model") else None
        retriever = cls(saved.encoder(cfg), saved.fusion(cfg), saved.source, list(overrides),
                        _engines(cfg, overrides, named), cfg.dump(), saved.kind, saved.identity())
        log.info("%sdefault scorer %s: %s", "encoding with ONNX Runtime; " if saved.format == "onnx" else "",
                 retriever.default_scorer, retriever.why)
        return retriever

    def export_onnx(self, folder: str | Path, top_k: int | None = None, int8: bool = False,
                    heads: tuple[str, ...] | None = None) -> dict:
        """The encoder as ONNX graphs in `folder` (modeling.onnx_export; `heads`: only these), with
        the config, fusion and kind that `from_pretrained(folder)` reads back -> the manifest."""
        from HybridPQA.modeling.onnx_export import export_onnx

        if self.encoder.model is None:
            raise InputError(f"{self.source}: already an ONNX export; export the checkpoint it came from")
        manifest = export_onnx(self.encoder, folder, top_k, int8, heads, fusion=asdict(self.fusion),
                               kind=asdict(self.kind))
        write_atomic(Path(folder) / CONFIG_FILE, self.config)
        return manifest

    # -- encoding and scoring ------------------------------------------------------------------
    def _encode(self, side: str, texts: list[str], sources: list[str] | None = None) -> Encoded:
        what = "query" if side == "query" else "document"
        texts = list(check_texts([texts] if isinstance(texts, str) else texts, what).values())
        return Encoded(self.encoder.encode_raw(side, texts, sources), self.terms)

    def encode_queries(self, texts: list[str]) -> Encoded:
        return self._encode("query", texts)

    def encode_documents(self, texts: list[str], sources: list[str] | None = None) -> Encoded:
        """`sources`: each text's evidence source (review, attribute, ...), where the model's text
        options use it (INSERT_SOURCE, FLATTEN_ATTRIBUTE)."""
        return self._encode("context", texts, sources)

    def score(self, query: str, documents: list[str], scorer: str | None = None,
              sources: list[str] | None = None) -> np.ndarray:
        """(len(documents),) scores of `query` against each document (scorer None: the default); a
        hybrid fused over them."""
        q, d = self.encode_queries([query]).reps, self.encode_documents(documents, sources).reps
        scores = {h: HEADS[h].matrix(v, d[h]) for h, v in q.items()}
        if {DENSE, SPARSE} <= set(scores):
            scores[HYBRID] = self.fusion.fuse(scores[DENSE], scores[SPARSE])
        return scores[check_scorer(scorer, list(scores), self.default_scorer)][0]

    def explain(self, query: str, document: str, top: int = 15) -> Explanation:
        """Terms, matches and the dense / sparse parts of the hybrid score of one pair (fused alone)."""
        if self.encoder.model is None:
            raise InputError(f"{self.source}: explain needs the PyTorch model; load the checkpoint, not its ONNX export")
        text = self.encoder.text or TextOptions()
        return explain_pair(self.encoder, text.query(query), text.context(document), self.fusion, top)


def _engines(cfg, overrides: list[str], named_cfg) -> EngineSettings:
    """RETRIEVER.INDEX, with the database URLs the user named: in `overrides` (KEY VALUE pairs, the
    --uri flag), in their own config (`named_cfg`; None where the config came from a folder)."""
    named = [*_named_uris(overrides), *([named_cfg.RETRIEVER.INDEX.URI] if named_cfg is not None else [])]
    return dataclasses.replace(build_engine_settings(cfg), named_uris=tuple(u for u in named if u))


def _named_uris(overrides: list[str]) -> tuple[str, ...]:
    return tuple(overrides[i + 1] for i in range(0, len(overrides) - 1, 2) if overrides[i] == "RETRIEVER.INDEX.URI")
