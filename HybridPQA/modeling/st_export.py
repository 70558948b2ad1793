"""A HybridPQA bi-encoder as sentence-transformers folders, one per head (sentence-transformers is
needed only here):

<out>/sparse/   SparseEncoder: fill-mask Transformer + SpladePooling (same aggregation, log1p(ReLU)
                activation), max_active_dims = TOP_K; inference-free queries as SparseStaticEmbedding
<out>/dense/    SentenceTransformer: Transformer + Pooling (CLS or mean), + Dense (identity activation)
                when the dense head has a projection

Queries and documents are encoded differently (their own encoder or max length), so each folder is
one sentence-transformers `Router`: `encode_query` takes the query route, `encode_document` the
document route, each with the model's max length for its side. The sparse head's vocabulary mask
(special tokens, punctuation, stopwords) has no sentence-transformers module; it is carried by the
exported MLM's output bias, set to -1e4 on masked terms, so their ReLU is 0 exactly as the mask
makes them. The similarity is the model's (dot or cosine), as `similarity_fn_name`.

Text options (RETRIEVER.DATA: NORMALIZE, INSERT_SOURCE, FLATTEN_ATTRIBUTE, ...) rewrite a text before
it is tokenised, and no sentence-transformers module does that without running code from the folder.
Each folder records them in `hybridpqa_text.json` (TEXT_FILE), and its model card says to apply them
(`TextOptions(**options).query(text)` / `.context(text)`) before `encode_query` / `encode_document`.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, SPARSE
from HybridPQA.modeling.encoder import HybridEncoder
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.static import StaticDenseHead, StaticQueryEncoder

MASKED_BIAS = -1e4  # an MLM logit this far below zero stays below after any real activation
TEXT_FILE = "hybridpqa_text.json"  # the text options, in each exported folder


def _st():
    try:
        from sentence_transformers import SentenceTransformer, SparseEncoder
        from sentence_transformers.sentence_transformer.modules import (
            Dense,
            Pooling,
            Router,
            StaticEmbedding,
            Transformer,
        )
        from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, SpladePooling
    except ImportError:
        raise InputError("export --format=sentence-transformers needs sentence-transformers >= 5.1 (its Router): "
                         "pip install -r requirements/bench.txt") from None
    return SentenceTransformer, SparseEncoder, Transformer, Pooling, Dense, SpladePooling, Router, StaticEmbedding, \
        SparseStaticEmbedding


def _static_modules(encoder: StaticQueryEncoder, tokenizer, st) -> dict[str, list]:
    """Static queries as sentence-transformers' SparseStaticEmbedding (and StaticEmbedding): no transformer."""
    *_, StaticEmbedding, SparseStaticEmbedding = st
    head = encoder.sparse_head
    weight = (torch.relu(head.weight) * head.vocab_mask).detach().cpu()  # masked terms weigh 0
    modules = {SPARSE: [SparseStaticEmbedding(tokenizer, weight=weight)]}
    if isinstance(encoder.dense_head, StaticDenseHead):
        modules[DENSE] = [StaticEmbedding(tokenizer, embedding_weights=encoder.dense_head.embedding.weight.detach().cpu())]
    return modules


def _transformer_modules(encoder: HybridEncoder, folder: Path, length: int, encoding, st) -> dict[str, list]:
    _, _, Transformer, Pooling, Dense, SpladePooling, *_ = st
    modules = {}
    if encoder.sparse_head is not None:
        mlm = Transformer(str(folder), transformer_task="fill-mask", max_seq_length=length)
        bias = mlm.auto_model.get_output_embeddings().bias
        with torch.no_grad():
            bias[~encoder.sparse_head.vocab_mask.to(bias.device)] = MASKED_BIAS
        modules[SPARSE] = [mlm, SpladePooling(encoding.agg, "relu", bias.shape[0])]
    head = encoder.dense_head
    if head is not None:
        modules[DENSE] = [Transformer(str(folder), max_seq_length=length),
                            Pooling(encoder.mlm.config.hidden_size, head.pooling)]
        if head.projection is not None:
            p = head.projection
            modules[DENSE].append(Dense(p.in_features, p.out_features, bias=p.bias is not None,
                                          activation_function=torch.nn.Identity(), init_weight=p.weight.detach().cpu(),
                                          init_bias=None if p.bias is None else p.bias.detach().cpu()))
    return modules


def export_sentence_transformers(encoder: Encoder, out: Path) -> list[str]:
    """Write one folder per head of `encoder`'s model under `out` ("sparse", "dense"); returns their names."""
    model, tokenizer, encoding = encoder.model, encoder.tokenizer, encoder.encoding
    if getattr(model.document_encoder, "interaction", None) is not None:
        raise InputError("export --checkpoint: sentence-transformers has no module for I3's document interaction; "
                         "use the checkpoint with HybridRetriever.from_pretrained instead")
    st = _st()
    SentenceTransformer, SparseEncoder, *_, Router = st[:7]
    similarity = "cosine" if encoding.cosine else "dot"
    routes = {}  # head -> side -> modules
    with tempfile.TemporaryDirectory() as scratch:
        for side in ("query", "context"):
            side_encoder = model.context_encoder if side == "context" and model.context_encoder is not None \
                else model.query_encoder
            if isinstance(side_encoder, StaticQueryEncoder):
                for head, modules in _static_modules(side_encoder, tokenizer, st).items():
                    routes.setdefault(head, {})[side] = modules
                if not isinstance(side_encoder.dense_head, HybridEncoder):
                    continue
                side_encoder = side_encoder.dense_head  # STATIC_DENSE transformer: the dense side is a transformer
            folder = Path(scratch) / side
            side_encoder.mlm.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            for head, modules in _transformer_modules(side_encoder, folder, encoding.max_length(side), encoding,
                                                      st).items():
                routes.setdefault(head, {}).setdefault(side, modules)
        written = []
        for head, sides in routes.items():
            if set(sides) != {"query", "context"}:
                continue
            router = Router.for_query_document(query_modules=sides["query"], document_modules=sides["context"])
            if head == SPARSE:
                top_k = encoding.top_k if encoding.top_k and encoding.top_k < len(tokenizer) else None
                built = SparseEncoder(modules=[router], max_active_dims=top_k, similarity_fn_name=similarity)
            else:
                built = SentenceTransformer(modules=[router], similarity_fn_name=similarity)
            built.save(str(out / head))
            record_text_options(out / head, asdict(encoder.text) if encoder.text is not None else {})
            written.append(head)
    if not written:
        raise InputError("export --format=sentence-transformers: this model has no dense or sparse head to export")
    return written


def record_text_options(folder: Path, options: dict) -> None:
    """`options` in `folder`'s TEXT_FILE, and, when any is on, a model-card section saying how to apply them."""
    (folder / TEXT_FILE).write_text(json.dumps(options, indent=2), encoding="utf-8")
    on = [name for name, value in options.items() if value]
    if not on:
        return
    card = folder / "README.md"
    note = (f"\n## Text options\n\nThis model was trained on texts rewritten before tokenising ({', '.join(on)}; "
            f"recorded in `{TEXT_FILE}`). Rewrite yours the same way before encoding, or its vectors differ:\n\n"
            "```python\nimport json\nfrom HybridPQA.data.text import TextOptions\n\n"
            f"options = TextOptions(**json.load(open(\"{TEXT_FILE}\")))\n"
            "model.encode_query([options.query(q) for q in queries])\n"
            "model.encode_document([options.context(d) for d in documents])\n```\n")
    card.write_text((card.read_text(encoding="utf-8") if card.is_file() else "") + note, encoding="utf-8")
