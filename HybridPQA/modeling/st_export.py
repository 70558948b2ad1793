"""A HybridPQA bi-encoder as sentence-transformers folders (sentence-transformers is needed only here).

<out>/sparse-query/, sparse-context/   SparseEncoder: fill-mask Transformer + SpladePooling (same
                                       aggregation, log1p(ReLU) activation), max_active_dims = TOP_K
<out>/dense-query/, dense-context/     SentenceTransformer: Transformer + Pooling (CLS or mean), + Dense
                                       (identity activation) when the dense head has a projection

One folder per side, each with its own max_seq_length (the model's query and context lengths),
even when the encoder is shared. The sparse head's vocabulary mask (special tokens, punctuation,
stopwords) has no sentence-transformers module; it is carried by the exported MLM's output bias,
set to -1e4 on masked terms, so their ReLU is 0 exactly as the mask makes them. The similarity is
the model's (dot or cosine), as `similarity_fn_name`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from HybridPQA.errors import InputError
from HybridPQA.modeling.encoder import HybridEncoder
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.static import StaticDenseHead, StaticQueryEncoder

MASKED_BIAS = -1e4  # an MLM logit this far below zero stays below after any real activation


def _st():
    try:
        from sentence_transformers import SentenceTransformer, SparseEncoder
        try:
            from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
            from sentence_transformers.sparse_encoder.modules import SpladePooling
        except ImportError:  # sentence-transformers 5
            from sentence_transformers.models import Dense, Pooling, Transformer
            from sentence_transformers.sparse_encoder.models import SpladePooling
    except ImportError:
        raise InputError("export --format=sentence-transformers needs sentence-transformers: "
                         "pip install -r requirements/bench.txt") from None
    return SentenceTransformer, SparseEncoder, Transformer, Pooling, Dense, SpladePooling


def _export_static(encoder: StaticQueryEncoder, tokenizer, similarity: str, out: Path) -> list[str]:
    """Static queries as sentence-transformers' SparseStaticEmbedding (and StaticEmbedding): no transformer."""
    from sentence_transformers import SentenceTransformer, SparseEncoder
    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
        from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding
    except ImportError:  # sentence-transformers 5
        from sentence_transformers.models import StaticEmbedding
        from sentence_transformers.sparse_encoder.models import SparseStaticEmbedding
    head = encoder.sparse_head
    weight = (torch.relu(head.weight) * head.vocab_mask).detach().cpu()  # masked terms weigh 0
    SparseEncoder(modules=[SparseStaticEmbedding(tokenizer, weight=weight)],
                  similarity_fn_name=similarity).save(str(out / "sparse-query"))
    written = ["sparse-query"]
    if isinstance(encoder.dense_head, StaticDenseHead):
        embedding = StaticEmbedding(tokenizer, embedding_weights=encoder.dense_head.embedding.weight.detach().cpu())
        SentenceTransformer(modules=[embedding], similarity_fn_name=similarity).save(str(out / "dense-query"))
        written.append("dense-query")
    return written


def export_sentence_transformers(encoder: Encoder, out: Path) -> list[str]:
    """Write the folders of `encoder`'s model under `out`; returns their names."""
    model, tokenizer, encoding = encoder.model, encoder.tokenizer, encoder.encoding
    if getattr(model.document_encoder, "interaction", None) is not None:
        raise InputError("export --checkpoint: sentence-transformers has no module for I3's document interaction; "
                         "use the checkpoint with HybridRetriever.from_pretrained instead")
    SentenceTransformer, SparseEncoder, Transformer, Pooling, Dense, SpladePooling = _st()
    similarity = "cosine" if encoding.cosine else "dot"
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for side in ("query", "context"):
            encoder = model.context_encoder if side == "context" and model.context_encoder is not None \
                else model.query_encoder
            if isinstance(encoder, StaticQueryEncoder):
                written += _export_static(encoder, tokenizer, similarity, out)
                if not isinstance(encoder.dense_head, HybridEncoder):
                    continue
                encoder = encoder.dense_head  # STATIC_DENSE transformer: the dense side is a transformer
            folder = Path(scratch) / side
            encoder.mlm.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            length = encoding.max_length(side)
            if encoder.sparse_head is not None:
                mlm = Transformer(str(folder), transformer_task="fill-mask", max_seq_length=length)
                bias = mlm.auto_model.get_output_embeddings().bias
                with torch.no_grad():
                    bias[~encoder.sparse_head.vocab_mask.to(bias.device)] = MASKED_BIAS
                top_k = encoding.top_k if encoding.top_k and encoding.top_k < bias.shape[0] else None
                sparse = SparseEncoder(modules=[mlm, SpladePooling(encoding.agg, "relu", bias.shape[0])],
                                       max_active_dims=top_k, similarity_fn_name=similarity)
                sparse.save(str(out / f"sparse-{side}"))
                written.append(f"sparse-{side}")
            head = encoder.dense_head
            if head is not None:
                backbone = Transformer(str(folder), max_seq_length=length)
                modules = [backbone, Pooling(encoder.mlm.config.hidden_size, head.pooling)]
                if head.projection is not None:
                    p = head.projection
                    modules.append(Dense(p.in_features, p.out_features, bias=p.bias is not None,
                                         activation_function=torch.nn.Identity(), init_weight=p.weight.detach().cpu(),
                                         init_bias=None if p.bias is None else p.bias.detach().cpu()))
                dense = SentenceTransformer(modules=modules, similarity_fn_name=similarity)
                dense.save(str(out / f"dense-{side}"))
                written.append(f"dense-{side}")
    if not written:
        raise InputError("export --format=sentence-transformers: this model has no dense or sparse head to export")
    return written
