"""`build_model` turns the MODEL config into a model, pretrained or from a checkpoint; `build_checkpointer`
what every checkpoint save needs.

BIENCODER_TYPE hybrid / dense / sparse -> BiEncoder (dense + late-interaction token vectors when
CROSS_INTERACTION), cross -> CrossEncoder, bm25 -> BM25 (no weights, no tokenizer).

A checkpoint directory is in Hugging Face format (`modeling.saved`): `query/` (and `context/`)
load with `AutoModelForMaskedLM.from_pretrained`, beside `heads.safetensors`, `hybridpqa.json`,
`encoding.json`, `config.yaml` and a model card. Old checkpoints (`model.pt`, `backbone/`,
`tokenizer/`) still load.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)
from yacs.config import CfgNode

from HybridPQA.config.defaults import get_cfg_defaults
from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, SCORER_HEADS, SPARSE
from HybridPQA.modeling.bm25 import BM25, build_bm25
from HybridPQA.modeling.cross import CrossEncoder
from HybridPQA.modeling.encoder import BiEncoder, HybridEncoder
from HybridPQA.modeling.encoding import build_encoding
from HybridPQA.modeling.heads import DenseHead, LateHead, SpladeHead
from HybridPQA.modeling.interaction import ImplicitInteraction
from HybridPQA.modeling.static import StaticDenseHead, StaticQueryEncoder, StaticSparseHead
from HybridPQA.modeling.card import CardFacts
from HybridPQA.modeling.saved import Checkpointer, check_weights, is_checkpoint, load_heads, load_weights, read_manifest
from HybridPQA.modeling.manifest import read_config
from HybridPQA.modeling.vocab import build_vocab_mask
from HybridPQA.scoring import build_fusion

log = logging.getLogger(__name__)
DROPOUT_ATTRS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")
MARKERS = ("[unused0]", "[unused1]")  # ColBERT's [Q] and [D], as in its BERT checkpoints


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # name or org/name


def check_hub_name(source: str) -> None:
    """A name that is no local folder must be a model on the Hugging Face hub: checked with one
    request (a few seconds at most), not discovered after a minute of retries."""
    if source.startswith(("/", ".", "~")) or not HUB_ID.fullmatch(source):
        raise InputError(f"{source}: no such folder; give a checkpoint, a model folder or a hub name (org/name)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise InputError(f"{source}: no such folder here, and the Hugging Face hub is off (HF_HUB_OFFLINE); "
                         "check the path")
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        huggingface_hub.model_info(source, timeout=10)
    except RepositoryNotFoundError:
        raise InputError(f"{source}: no such folder here, nor a model of that name on the Hugging Face hub; "
                         "check the path") from None
    except Exception as err:  # noqa: BLE001 - any network failure: the hub cannot be asked from here
        raise InputError(f"{source}: no such folder here, and the Hugging Face hub cannot be reached to look it up "
                         f"({err.__class__.__name__}); check the path, or give a local model folder") from None


def _backbone_config(source: str, dropout: float | None, **extra):
    try:
        config = AutoConfig.from_pretrained(source, **extra)
    except OSError as err:
        raise InputError(f"RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE = {source!r}: cannot load it ({err.__class__.__name__}); "
                         "give a local model directory or a hub name reachable from here") from None
    for attr in DROPOUT_ATTRS:
        if dropout is not None and hasattr(config, attr):
            setattr(config, attr, dropout)
    return config


def _pretrained(auto_class, source: str, **kwargs):
    """auto_class.from_pretrained, with a one-line error for weights that cannot be read."""
    try:
        return auto_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0][:100] if str(err).strip() else err.__class__.__name__
        raise InputError(f"{source}: cannot load its weights ({first}); the folder is damaged or not a "
                         "transformers model") from None


def _load_cross(source: str, dropout: float | None, weights: bool) -> CrossEncoder:
    """Sequence classification with one output over the backbone; pooler and classifier start random
    when the source is a masked LM."""
    config = _backbone_config(source, dropout, num_labels=1)
    if not weights:
        return CrossEncoder(AutoModelForSequenceClassification.from_config(config))
    return CrossEncoder(_pretrained(AutoModelForSequenceClassification, source, config=config))


def _load_mlm(source: str, dropout: float | None, weights: bool, head_used: bool = True,
              head_init: str = "identity") -> torch.nn.Module:
    """A masked LM from a hub name or directory; a missing MLM head is built with its decoder tied to the
    word embeddings and its transform `head_init` (MODEL.MLM_HEAD_INIT), said in the log where a sparse
    head or the interaction uses it."""
    config = _backbone_config(source, dropout)
    if not weights:
        return AutoModelForMaskedLM.from_config(config)
    mlm, info = _pretrained(AutoModelForMaskedLM, source, config=config, output_loading_info=True)
    head_missing = [k for k in info["missing_keys"] if not k.startswith(mlm.base_model_prefix)]
    if head_missing:
        mlm.get_output_embeddings().weight = mlm.get_input_embeddings().weight
        if head_init == "identity":
            _identity_transform(mlm, set(head_missing))
        (log.warning if head_used else log.debug)(
            "%s has no MLM head (%d missing weights): built one with its decoder tied to the word embeddings "
            "and its transform starting %s (RETRIEVER.MODEL.MLM_HEAD_INIT); RETRIEVER.MODEL.MLM_WARMUP trains it "
            "before contrastive training", source, len(head_missing),
            "as the identity" if head_init == "identity" else "random")
    return mlm


def _identity_transform(mlm: torch.nn.Module, missing: set[str]) -> None:
    """The new head's square transform layer(s) as the identity with zero bias, so the logits start as the
    (layer-normed, GELU'd) hidden state's dot product with each word embedding."""
    hidden = mlm.config.hidden_size
    for name, module in mlm.named_modules():
        if isinstance(module, torch.nn.Linear) and f"{name}.weight" in missing \
                and module.weight.shape == (hidden, hidden):
            with torch.no_grad():
                module.weight.copy_(torch.eye(hidden))
                if module.bias is not None:
                    module.bias.zero_()


def build_tokenizer(source: str, do_lower_case: bool):
    try:
        return AutoTokenizer.from_pretrained(source, do_lower_case=do_lower_case)
    except OSError as err:
        raise InputError(f"{source}: cannot load its tokenizer ({err.__class__.__name__}); "
                         "check RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE / the checkpoint") from None


def _encoder(mlm: torch.nn.Module, tokenizer, model_cfg: CfgNode, side: str = "context") -> HybridEncoder:
    heads = SCORER_HEADS[model_cfg.BIENCODER_TYPE]
    if model_cfg.CROSS_INTERACTION:
        return HybridEncoder(mlm, None, None, LateHead(mlm.config.hidden_size, model_cfg.PROJECTION_DIM))
    if side == "query" and model_cfg.QUERY_ENCODER == "static":  # the transformer of STATIC_DENSE transformer
        return HybridEncoder(mlm, DenseHead(mlm.config.hidden_size, model_cfg.POOLING, model_cfg.PROJECTION_DIM), None)
    dense = DenseHead(mlm.config.hidden_size, model_cfg.POOLING, model_cfg.PROJECTION_DIM) if DENSE in heads else None
    sparse = None
    if SPARSE in heads:
        vocab_size = mlm.get_output_embeddings().weight.shape[0]
        mask = build_vocab_mask(tokenizer, tuple(model_cfg.VOCAB_MASK), vocab_size)
        sparse = SpladeHead(mask, model_cfg.AGG, model_cfg.TOP_K)
    interaction = None
    if model_cfg.IMPLICIT_INTERACTION and side == "context":
        if not hasattr(getattr(mlm, "cls", None), "predictions"):
            raise InputError(f"RETRIEVER.MODEL.IMPLICIT_INTERACTION needs a BERT-family masked LM (cls.predictions); "
                             f"{type(mlm).__name__} has none")
        i3 = model_cfg.I3
        interaction = ImplicitInteraction(mlm, i3.SLOTS, i3.SPARSE and sparse is not None, i3.TARGETS != "none",
                                          tokenizer.mask_token_id)
    return HybridEncoder(mlm, dense, sparse, interaction=interaction)


def _static_queries(context: HybridEncoder, tokenizer, model_cfg: CfgNode, transformer: HybridEncoder | None):
    """MODEL.QUERY_ENCODER static: term weights (and token embeddings) in place of a query transformer."""
    mlm = context.mlm
    vocab_size = mlm.get_output_embeddings().weight.shape[0]
    sparse = StaticSparseHead(build_vocab_mask(tokenizer, tuple(model_cfg.VOCAB_MASK), vocab_size))
    dense = transformer
    if DENSE in SCORER_HEADS[model_cfg.BIENCODER_TYPE] and model_cfg.STATIC_DENSE == "embedding":
        if model_cfg.PROJECTION_DIM:
            raise InputError("RETRIEVER.MODEL.STATIC_DENSE = 'embedding' gives queries the hidden size; set "
                             "PROJECTION_DIM None, or STATIC_DENSE 'transformer'")
        dense = StaticDenseHead(mlm.get_input_embeddings().weight, ~build_vocab_mask(tokenizer, ("special",),
                                                                                      vocab_size))
    return StaticQueryEncoder(sparse, dense)


def _markers(tokenizer) -> dict[str, int] | None:
    ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
    if tokenizer.unk_token_id in ids:
        log.warning("the tokenizer has no %s tokens: late interaction runs without query/document markers",
                    " / ".join(MARKERS))
        return None
    return {"query": ids[0], "context": ids[1]}


def build_model(cfg: CfgNode, checkpoint: str | Path | None = None,
                hub_checked: bool = False) -> tuple[BiEncoder | CrossEncoder | BM25, object]:
    """(model, tokenizer) from MODEL.PRETRAINED_MODEL_TYPE, or from a checkpoint directory
    (`checkpoint`, else MODEL.MODEL_PATH) whose weights replace the pretrained ones; `hub_checked`:
    the loader has checked the hub name already."""
    model_cfg = cfg.RETRIEVER.MODEL
    if model_cfg.BIENCODER_TYPE == "bm25":
        return build_bm25(cfg), None
    checkpoint = Path(checkpoint or model_cfg.MODEL_PATH) if checkpoint or model_cfg.MODEL_PATH else None
    sources, weights, tokenizer_source, manifest = _sources(model_cfg, checkpoint, hub_checked)
    tokenizer = build_tokenizer(tokenizer_source, model_cfg.DO_LOWER_CASE)
    if model_cfg.BIENCODER_TYPE == "cross":
        model = _load_cross(sources.get("cross", sources.get("query")), model_cfg.DROPOUT, weights)
    else:
        static = model_cfg.QUERY_ENCODER == "static"
        query_needs_mlm = not static or (model_cfg.STATIC_DENSE == "transformer"
                                         and DENSE in SCORER_HEADS[model_cfg.BIENCODER_TYPE])
        head_used = SPARSE in SCORER_HEADS[model_cfg.BIENCODER_TYPE] or bool(model_cfg.IMPLICIT_INTERACTION)
        load = lambda source: _load_mlm(source, model_cfg.DROPOUT, weights, head_used, model_cfg.MLM_HEAD_INIT)  # noqa: E731
        shared_static = static and model_cfg.SHARED_ENCODER  # one transformer: documents, and queries' dense side
        query = None
        if query_needs_mlm and not shared_static:
            source = sources.get("query", sources.get("context"))
            query = _encoder(load(source), tokenizer, model_cfg,
                             "query" if static or not model_cfg.SHARED_ENCODER else "context")
        context = None
        if not model_cfg.SHARED_ENCODER or shared_static:
            source = sources.get("context", sources.get("query"))
            context = _encoder(load(source), tokenizer, model_cfg)
        if shared_static:
            query = HybridEncoder(context.mlm, context.dense_head, None)
        if static:
            query = _static_queries(context, tokenizer, model_cfg, query)
        model = BiEncoder(query, context, _markers(tokenizer) if model_cfg.CROSS_INTERACTION else None)
    if manifest is not None:
        load_heads(model, checkpoint)
        log.info("loaded %s", checkpoint)
    elif checkpoint is not None:
        load_weights(model, checkpoint)
        log.info("loaded weights from %s (model.pt, the old checkpoint format)", checkpoint)
    elif model_cfg.PROJECTION_DIM and model_cfg.BIENCODER_TYPE == DENSE and not model_cfg.CROSS_INTERACTION:
        log.warning("RETRIEVER.MODEL.PROJECTION_DIM is set and no checkpoint is loaded: the projection is random")
    return model, tokenizer


def _sources(model_cfg: CfgNode, checkpoint: Path | None, hub_checked: bool) -> tuple[dict, bool, str, dict | None]:
    """Where each encoder's weights come from -> ({folder: source}, pretrained weights to load,
    the tokenizer's source, the checkpoint's manifest or None)."""
    if checkpoint is None:
        if not hub_checked and not Path(model_cfg.PRETRAINED_MODEL_TYPE).expanduser().exists():
            check_hub_name(model_cfg.PRETRAINED_MODEL_TYPE)
        return {"query": model_cfg.PRETRAINED_MODEL_TYPE}, True, model_cfg.PRETRAINED_MODEL_TYPE, None
    if not is_checkpoint(checkpoint):
        raise InputError(f"{checkpoint}: not a HybridPQA checkpoint (no hybridpqa.json or model.pt); give a "
                         "directory under <run>/checkpoints/")
    _check_compatible(checkpoint, model_cfg)
    manifest = read_manifest(checkpoint)
    if manifest is None:  # the old format: architecture from backbone/, weights from model.pt
        return {"query": str(checkpoint / "backbone")}, False, str(checkpoint / "tokenizer"), None
    check_weights(checkpoint, manifest)
    sources = {name: str(checkpoint / name) for name in manifest["folders"]}
    return sources, True, next(sources[name] for name in ("cross", "query", "context") if name in sources), manifest


DEFAULT_MODEL = get_cfg_defaults().RETRIEVER.MODEL  # what a checkpoint saved before a key existed had
STRUCTURAL_KEYS = ("BIENCODER_TYPE", "SHARED_ENCODER", "PROJECTION_DIM", "CROSS_INTERACTION", "QUERY_ENCODER",
                   "STATIC_DENSE", "IMPLICIT_INTERACTION", "I3")


def _check_compatible(checkpoint: Path, model_cfg: CfgNode) -> None:
    saved = read_config(checkpoint).RETRIEVER.MODEL
    for key in STRUCTURAL_KEYS:
        if saved.get(key, DEFAULT_MODEL[key]) != model_cfg[key]:
            raise InputError(f"{checkpoint}: saved with RETRIEVER.MODEL.{key} = {saved.get(key)!r} but the config says "
                             f"{model_cfg[key]!r}; evaluate with that checkpoint's config.yaml")


def build_checkpointer(cfg: CfgNode, tokenizer) -> Checkpointer:
    """What every checkpoint save of this run writes beside the weights: the config, the model's
    description, the encoding settings, the fusion to search with and the model card's facts."""
    m, s, d = cfg.RETRIEVER.MODEL, cfg.RETRIEVER.SOLVER, cfg.RETRIEVER.DATA
    model = {"biencoder_type": m.BIENCODER_TYPE, "shared_encoder": bool(m.SHARED_ENCODER),
             "projection_dim": m.PROJECTION_DIM, "cross_interaction": bool(m.CROSS_INTERACTION),
             "query_encoder": m.QUERY_ENCODER, "implicit_interaction": bool(m.IMPLICIT_INTERACTION)}
    card = CardFacts(cfg.EXP, m.BIENCODER_TYPE, m.PRETRAINED_MODEL_TYPE, d.NAME, d.TRAIN_DATA_PATH, d.VAL_DATA_PATH,
                     d.VAL_FROM_TRAIN, s.TOTAL_TRAIN_STEPS, s.TRAIN_BATCH_SIZE, d.NUM_TOTAL_CONTEXTS,
                     s.OPTIMIZER.BASE_LR, s.TEMPERATURE, s.FUNC, s.LAMBDA_QUERY, s.LAMBDA_CONTEXT)
    return Checkpointer(tokenizer, cfg.dump(), model, build_encoding(cfg), build_fusion(cfg), card)
