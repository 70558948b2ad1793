"""Choices, ranges and cross-field checks of a merged configuration (`validate`); each failure is
one line naming the key and what to do."""
from __future__ import annotations

import re

from yacs.config import CfgNode as CN

from HybridPQA.backends import STORES, engines_of
from HybridPQA.errors import InputError
from HybridPQA.scoring import METHODS, NORMS

COLLECTION_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,254}"  # what Qdrant and Milvus both accept
METRICS = ("mrr@5", "map", "ndcg@5", "ndcg@10", "precision@1", "hit_rate@5", "r-precision")
CHOICES = {
    "RETRIEVER.MODEL.BIENCODER_TYPE": ("hybrid", "dense", "sparse", "cross", "bm25"),
    "RETRIEVER.MODEL.POOLING": ("cls", "mean"),
    "RETRIEVER.MODEL.AGG": ("max", "sum"),
    "RETRIEVER.SOLVER.LEVEL": ("pooled", "seq"),
    "RETRIEVER.SOLVER.BROADCAST": ("local", "global"),
    "RETRIEVER.SOLVER.FUNC": ("dot", "cosine"),
    "RETRIEVER.SOLVER.OPTIMIZER.NAME": ("AdamW", "Adam"),
    "RETRIEVER.SOLVER.SELECT_METRIC": METRICS + ("recall@100",),
    "RETRIEVER.FUSION.METHOD": METHODS,
    "RETRIEVER.FUSION.NORM": NORMS,
    "RETRIEVER.INDEX.DENSE": engines_of("dense"),
    "RETRIEVER.INDEX.SPARSE": engines_of("sparse"),
    "RETRIEVER.INDEX.HYBRID": ("exact", "candidates", "native"),
    "RETRIEVER.INDEX.STORE": tuple(STORES),
    "RETRIEVER.INDEX.ENGINE": ("", *STORES),  # the old name of STORE
    "RETRIEVER.DISTILL.LOSS": ("margin-mse", "kl"),
    "RETRIEVER.SOLVER.LOSS": ("contrastive", "symmetric-infonce", "cosent", "softmax", "cosine-mse", "triplet"),
    "RETRIEVER.SOLVER.TRIPLET_DISTANCE": ("euclidean", "cosine"),
    "RETRIEVER.SOLVER.TRIPLET_MINING": ("none", "batch-hard"),
    "RETRIEVER.MODEL.QUERY_ENCODER": ("transformer", "static"),
    "RETRIEVER.MODEL.STATIC_DENSE": ("embedding", "transformer"),
    "RETRIEVER.MODEL.MLM_HEAD_INIT": ("identity", "random"),
    "RETRIEVER.MODEL.MLM_WARMUP.TRAIN": ("head", "all"),
    "RETRIEVER.MODEL.I3.TARGETS": ("questions", "title", "questions-or-title", "none"),
    "PRECISION": ("auto", "fp32", "bf16", "fp16"),
}
VOCAB_MASK_PARTS = ("special", "punctuation", "stopwords")
EXP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,199}")  # one safe folder name under --path_output
# key -> (minimum, may be None); integers must be >= minimum, floats > or >= as noted
POSITIVE_INTS = {
    "RETRIEVER.DATA.NUM_POSITIVE_CONTEXTS": 1, "RETRIEVER.DATA.NUM_TOTAL_CONTEXTS": 1,
    "RETRIEVER.MODEL.QUESTION_MAX_LENGTH": 2, "RETRIEVER.MODEL.CONTEXT_MAX_LENGTH": 2,
    "RETRIEVER.SOLVER.TRAIN_BATCH_SIZE": 1, "RETRIEVER.SOLVER.TEST_BATCH_SIZE": 1,
    "RETRIEVER.SOLVER.TEST_CTX_BSZ": 1, "RETRIEVER.SOLVER.TOTAL_TRAIN_STEPS": 1,
    "RETRIEVER.SOLVER.NUM_STEP_PER_EVAL": 1, "RETRIEVER.SOLVER.CP_SAVE_LIMIT": 1,
    "RETRIEVER.SOLVER.LOG_STEPS": 1, "RETRIEVER.SOLVER.OPTIMIZER.GRADIENT_ACCUMULATION_STEPS": 1,
    "RETRIEVER.SOLVER.OPTIMIZER.WARMUP_STEPS": 0, "NUM_THREADS": 0, "RETRIEVER.SOLVER.TOP_RETRIEVE_COUNT": 1,
    "RETRIEVER.DATA.HARD_NEGATIVES_DEPTH": 1, "RETRIEVER.FUSION.RRF_K": 1, "RETRIEVER.RERANK.DEPTH": 1,
    "RETRIEVER.DISTILL.SELF_START_STEP": 0, "RETRIEVER.SOLVER.NUM_LABELS": 2, "RETRIEVER.MODEL.I3.SLOTS": 1,
    "RETRIEVER.INDEX.CANDIDATES": 1, "RETRIEVER.INDEX.NORM_SAMPLE": 0, "RETRIEVER.INDEX.BATCH": 1, "RETRIEVER.INDEX.SEISMIC.N_POSTINGS": 1, "RETRIEVER.INDEX.SEISMIC.QUERY_CUT": 1,
    "RETRIEVER.INDEX.SEISMIC.MIN_CLUSTER_SIZE": 1, "RETRIEVER.INDEX.SEISMIC.DOC_CUT": 1, "RETRIEVER.INDEX.HNSW.M": 2,
    "RETRIEVER.INDEX.QUERY_TERMS": 0, "RETRIEVER.INDEX.SPARSE_CANDIDATES": 0, "RETRIEVER.INDEX.DENSE_CANDIDATES": 0,
    "RETRIEVER.INDEX.BMP.BSIZE": 1, "RETRIEVER.INDEX.PRUNED.DOC_TERMS": 1,
    "RETRIEVER.INDEX.HNSW.EF_CONSTRUCTION": 1, "RETRIEVER.INDEX.HNSW.EF_SEARCH": 1, "RETRIEVER.INDEX.IVF.NLIST": 0,
    "RETRIEVER.INDEX.IVF.NPROBE": 1, "RETRIEVER.INDEX.IVF.PQ_M": 1, "RETRIEVER.INDEX.IVF.PQ_BITS": 1,
    "RETRIEVER.MODEL.MLM_WARMUP.STEPS": 0, "RETRIEVER.MODEL.MLM_WARMUP.BATCH_SIZE": 1,
    "RETRIEVER.MODEL.MLM_WARMUP.MAX_LENGTH": 8,
}
OPTIONAL_POSITIVE_INTS = {
    "RETRIEVER.DATA.COUNT": 1, "RETRIEVER.MODEL.TOP_K": 1, "RETRIEVER.MODEL.PROJECTION_DIM": 1,
    "RETRIEVER.SOLVER.REG_WARMUP_STEPS": 1, "RETRIEVER.SOLVER.GRAD_CACHE_CHUNK": 1,
}

LOG_BACKENDS = ("tensorboard", "wandb")  # the experiment trackers of engine.tracking


def get_key(cfg: CN, key: str):
    """The value of a dotted key."""
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def validate(cfg: CN) -> None:
    """Choices, ranges and cross-field checks; each failure names the key and what to do."""
    _check_values(cfg)
    for failed, message in (*_rules(cfg), *_training_rules(cfg), *_index_rules(cfg)):
        if failed:
            raise InputError(f"config: {message}")
    _check_paths(cfg)


def _check_values(cfg: CN) -> None:
    """Each key on its own: choices, whole numbers, names, lists."""
    for key, choices in CHOICES.items():
        if get_key(cfg, key) not in choices:
            raise InputError(f"config: {key} = {get_key(cfg, key)!r} is not one of {', '.join(choices)}")
    for key, minimum in {**POSITIVE_INTS, **OPTIONAL_POSITIVE_INTS}.items():
        value = get_key(cfg, key)
        if value is None and key in OPTIONAL_POSITIVE_INTS:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            allowed = " or None" if key in OPTIONAL_POSITIVE_INTS else ""
            raise InputError(f"config: {key} = {value!r} must be an integer >= {minimum}{allowed}")
    m = cfg.RETRIEVER.MODEL
    if not isinstance(cfg.EXP, str) or not EXP_NAME.fullmatch(cfg.EXP):
        raise InputError(f"config: EXP = {str(cfg.EXP)[:80]!r} must be one folder name of 1-200 letters, digits and "
                         "_ . = + - (not starting with . or -), since the run directory is <path_output>/<EXP>/")
    if cfg.DEVICE is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(cfg.DEVICE)):
        raise InputError(f"config: DEVICE = {cfg.DEVICE!r} is not one of auto, cpu, cuda, cuda:N")
    bad = [p for p in m.VOCAB_MASK if p not in VOCAB_MASK_PARTS]
    if not isinstance(m.VOCAB_MASK, tuple) or bad:
        raise InputError(f"config: RETRIEVER.MODEL.VOCAB_MASK takes a list of {', '.join(VOCAB_MASK_PARTS)}; "
                         f"got {m.VOCAB_MASK!r}")
    if not isinstance(cfg.LOG.BACKENDS, tuple) or any(b not in LOG_BACKENDS for b in cfg.LOG.BACKENDS):
        raise InputError(f"config: LOG.BACKENDS takes a list of {', '.join(LOG_BACKENDS)}; got {cfg.LOG.BACKENDS!r}")
    for key in ("BF16", "FP16"):
        if cfg[key] is not None and not isinstance(cfg[key], bool):
            raise InputError(f"config: {key} = {cfg[key]!r} must be True, False or None (then PRECISION decides)")


def _rules(cfg: CN) -> list[tuple[bool, str]]:
    """(broken, what to do) of the keys that must agree: precision, the model, distillation."""
    m, s, d = cfg.RETRIEVER.MODEL, cfg.RETRIEVER.SOLVER, cfg.RETRIEVER.DATA
    return [
        (cfg.FP16 and cfg.BF16, "FP16 and BF16 are both True; choose one precision"),
        (cfg.PRECISION != "auto" and (cfg.FP16 is not None or cfg.BF16 is not None),
         f"PRECISION = {cfg.PRECISION!r} and BF16/FP16 both set the precision; keep PRECISION and drop BF16/FP16"),
        (m.CROSS_INTERACTION != (s.LEVEL == "seq"),
         "late interaction needs both RETRIEVER.MODEL.CROSS_INTERACTION True and RETRIEVER.SOLVER.LEVEL 'seq'; "
         "set both, or neither"),
        (m.CROSS_INTERACTION and m.BIENCODER_TYPE != "dense",
         f"RETRIEVER.MODEL.CROSS_INTERACTION = True is a dense model; set BIENCODER_TYPE 'dense', "
         f"not {m.BIENCODER_TYPE!r}"),
        (cfg.RETRIEVER.BM25.K1 <= 0 or not 0 <= cfg.RETRIEVER.BM25.B <= 1,
         "RETRIEVER.BM25.K1 must be > 0 and RETRIEVER.BM25.B in [0, 1]"),
        (cfg.RETRIEVER.DISTILL.WEIGHT < 0 or cfg.RETRIEVER.DISTILL.SELF_WEIGHT < 0,
         "RETRIEVER.DISTILL.WEIGHT and SELF_WEIGHT must be >= 0"),
        (cfg.RETRIEVER.DISTILL.TEACHER_TEMPERATURE <= 0, "RETRIEVER.DISTILL.TEACHER_TEMPERATURE must be > 0"),
        (cfg.RETRIEVER.DISTILL.SELF_WEIGHT > 0 and m.BIENCODER_TYPE != "hybrid",
         "RETRIEVER.DISTILL.SELF_WEIGHT > 0 distils the fused score into the heads; it needs BIENCODER_TYPE 'hybrid'"),
        (m.BIENCODER_TYPE == "bm25" and cfg.RETRIEVER.DO_TRAIN,
         "RETRIEVER.MODEL.BIENCODER_TYPE = 'bm25' has nothing to train; set RETRIEVER.DO_TRAIN False"),
        (not isinstance(m.PRETRAINED_MODEL_TYPE, str) or not m.PRETRAINED_MODEL_TYPE,
         "RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE must name a hub model or a local directory"),
        (d.NUM_POSITIVE_CONTEXTS > d.NUM_TOTAL_CONTEXTS,
         "RETRIEVER.DATA.NUM_POSITIVE_CONTEXTS exceeds NUM_TOTAL_CONTEXTS; lower it or raise the total"),
        (not 0.0 <= s.ALPHA <= 1.0, f"RETRIEVER.SOLVER.ALPHA = {s.ALPHA} must lie in [0, 1]"),
        (m.MLM_WARMUP.STEPS > 0 and (m.BIENCODER_TYPE not in ("hybrid", "sparse") or m.CROSS_INTERACTION),
         f"RETRIEVER.MODEL.MLM_WARMUP.STEPS = {m.MLM_WARMUP.STEPS} warms up a sparse head's MLM; this "
         f"{m.BIENCODER_TYPE} model has none: set MLM_WARMUP.STEPS 0"),
    ]


def _training_rules(cfg: CN) -> list[tuple[bool, str]]:
    """(broken, what to do) of the data split, the losses and the optimiser."""
    m, s, d = cfg.RETRIEVER.MODEL, cfg.RETRIEVER.SOLVER, cfg.RETRIEVER.DATA
    return [
        (not 0.0 <= d.VAL_FROM_TRAIN < 1.0, f"RETRIEVER.DATA.VAL_FROM_TRAIN = {d.VAL_FROM_TRAIN} must lie in [0, 1)"),
        (d.VAL_FROM_TRAIN > 0 and d.VAL_DATA_PATH is not None,
         "RETRIEVER.DATA.VAL_FROM_TRAIN > 0 carves the val split from train; set VAL_DATA_PATH None"),
        (s.TEMPERATURE <= 0, f"RETRIEVER.SOLVER.TEMPERATURE = {s.TEMPERATURE} must be > 0"),
        (s.LAMBDA_QUERY < 0 or s.LAMBDA_CONTEXT < 0, "RETRIEVER.SOLVER.LAMBDA_QUERY/LAMBDA_CONTEXT must be >= 0"),
        (s.HYBRID_LOSS_WEIGHT < 0, "RETRIEVER.SOLVER.HYBRID_LOSS_WEIGHT must be >= 0"),
        (m.DROPOUT is not None and not (isinstance(m.DROPOUT, (int, float)) and 0 <= m.DROPOUT < 1),
         f"RETRIEVER.MODEL.DROPOUT = {m.DROPOUT!r} must be None or in [0, 1)"),
        (s.OPTIMIZER.BASE_LR <= 0, "RETRIEVER.SOLVER.OPTIMIZER.BASE_LR must be > 0"),
        (m.MLM_WARMUP.LR <= 0, "RETRIEVER.MODEL.MLM_WARMUP.LR must be > 0"),
        (s.OPTIMIZER.HEAD_LR is not None and not (isinstance(s.OPTIMIZER.HEAD_LR, (int, float))
                                                  and s.OPTIMIZER.HEAD_LR > 0),
         f"RETRIEVER.SOLVER.OPTIMIZER.HEAD_LR = {s.OPTIMIZER.HEAD_LR!r} must be a number > 0 or None (= BASE_LR)"),
        (s.LOSS == "cosine-mse" and s.FUNC != "cosine",
         "RETRIEVER.SOLVER.LOSS = 'cosine-mse' regresses cosine similarities; set RETRIEVER.SOLVER.FUNC 'cosine'"),
        (s.TRIPLET_MARGIN <= 0, "RETRIEVER.SOLVER.TRIPLET_MARGIN must be > 0"),
        (s.GRAD_CACHE_CHUNK is not None and (m.BIENCODER_TYPE in ("cross", "bm25") or m.CROSS_INTERACTION),
         "RETRIEVER.SOLVER.GRAD_CACHE_CHUNK caches pooled bi-encoder vectors; it does not apply to cross, bm25 or "
         "late interaction (set it None there)"),
        (s.LOSS == "softmax" and cfg.DISTRIBUTED,
         "RETRIEVER.SOLVER.LOSS = 'softmax' trains a classifier outside the model, which DDP would not synchronise; "
         "train it in one process (DISTRIBUTED False)"),
        (s.LOSS != "contrastive" and m.CROSS_INTERACTION,
         f"RETRIEVER.SOLVER.LOSS = {s.LOSS!r} is for pooled vectors; late interaction trains with 'contrastive'"),
        (m.QUERY_ENCODER == "static" and (m.CROSS_INTERACTION or m.BIENCODER_TYPE not in ("hybrid", "sparse")),
         "RETRIEVER.MODEL.QUERY_ENCODER = 'static' needs BIENCODER_TYPE hybrid or sparse and no CROSS_INTERACTION "
         "(its query side is no transformer)"),
        (m.QUERY_ENCODER == "static" and m.SHARED_ENCODER and (m.BIENCODER_TYPE, m.STATIC_DENSE) != ("hybrid",
                                                                                                       "transformer"),
         "RETRIEVER.MODEL.QUERY_ENCODER = 'static' with SHARED_ENCODER True needs a hybrid with STATIC_DENSE "
         "'transformer' (queries' dense vectors from the documents' transformer); else set SHARED_ENCODER False"),
        (m.IMPLICIT_INTERACTION and (m.CROSS_INTERACTION or m.SHARED_ENCODER
                                     or m.BIENCODER_TYPE not in ("hybrid", "dense", "sparse")),
         "RETRIEVER.MODEL.IMPLICIT_INTERACTION is document-side: it needs BIENCODER_TYPE hybrid, dense or sparse, "
         "SHARED_ENCODER False and no CROSS_INTERACTION"),
        (m.I3.RECON_WEIGHT < 0 or m.I3.RECON_DECAY < 1,
         "RETRIEVER.MODEL.I3.RECON_WEIGHT must be >= 0 and RECON_DECAY >= 1 (beta = weight * decay ** -epoch)"),
        (len(s.OPTIMIZER.BETAS) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                                and 0 <= b < 1 for b in s.OPTIMIZER.BETAS),
         f"RETRIEVER.SOLVER.OPTIMIZER.BETAS = {s.OPTIMIZER.BETAS!r} must be two numbers in [0, 1)"),
        (s.OPTIMIZER.MAX_GRAD_NORM is not None and s.OPTIMIZER.MAX_GRAD_NORM <= 0,
         "RETRIEVER.SOLVER.OPTIMIZER.MAX_GRAD_NORM must be > 0 or None"),
    ]


def _index_rules(cfg: CN) -> list[tuple[bool, str]]:
    """(broken, what to do) of RETRIEVER.INDEX: engines' parameters, the store, its URI and collection."""
    return [
        (not 0.0 < cfg.RETRIEVER.INDEX.SEISMIC.HEAP_FACTOR <= 1.0 or not 0.0 < cfg.RETRIEVER.INDEX.SEISMIC.SUMMARY_ENERGY <= 1.0
         or not 0.0 < cfg.RETRIEVER.INDEX.SEISMIC.CENTROID_FRACTION <= 1.0,
         "RETRIEVER.INDEX.SEISMIC.HEAP_FACTOR, SUMMARY_ENERGY and CENTROID_FRACTION must lie in (0, 1]"),
        (not 0.0 < cfg.RETRIEVER.INDEX.BMP.THRESHOLD <= 1.0 or not 0.0 < cfg.RETRIEVER.INDEX.BMP.QUERY_SHARE <= 1.0,
         "RETRIEVER.INDEX.BMP.THRESHOLD and QUERY_SHARE must lie in (0, 1] (1: exact)"),
        (cfg.RETRIEVER.INDEX.HYBRID == "native" and cfg.RETRIEVER.INDEX.STORE == "memory",
         "RETRIEVER.INDEX.HYBRID = 'native' is a vector database's own fusion; set RETRIEVER.INDEX.STORE qdrant or milvus"),
        (not isinstance(cfg.RETRIEVER.INDEX.URI, str) or not isinstance(cfg.RETRIEVER.INDEX.COLLECTION, str),
         "RETRIEVER.INDEX.URI and COLLECTION must be strings ('' for the defaults)"),
        (isinstance(cfg.RETRIEVER.INDEX.URI, str) and cfg.RETRIEVER.INDEX.URI
         and not re.fullmatch(r"(https?|tcp|grpc)://[^\s/?#]+(/\S*)?", cfg.RETRIEVER.INDEX.URI),
         f"RETRIEVER.INDEX.URI (--uri) = {cfg.RETRIEVER.INDEX.URI!r} is not a server's URL; give http(s)://HOST:PORT, "
         "or leave it empty for the embedded store inside the index folder"),
        (cfg.RETRIEVER.INDEX.STORE == "memory" and (cfg.RETRIEVER.INDEX.URI or cfg.RETRIEVER.INDEX.COLLECTION),
         "RETRIEVER.INDEX.URI and COLLECTION (--uri, --collection) are a vector database's; with STORE 'memory' "
         "(the default) they do not apply: set STORE qdrant or milvus (--store), or drop them"),
        (isinstance(cfg.RETRIEVER.INDEX.COLLECTION, str) and cfg.RETRIEVER.INDEX.COLLECTION
         and not re.fullmatch(COLLECTION_NAME, cfg.RETRIEVER.INDEX.COLLECTION),
         f"RETRIEVER.INDEX.COLLECTION (--collection) = {cfg.RETRIEVER.INDEX.COLLECTION[:60]!r}: a collection name is "
         "1 to 255 letters, digits and underscores, starting with a letter or underscore (Qdrant's and Milvus's rule)"),
    ]


def _check_paths(cfg: CN) -> None:
    m, d = cfg.RETRIEVER.MODEL, cfg.RETRIEVER.DATA
    paths = {f"RETRIEVER.DATA.{k}": d[k] for k in ("TRAIN_DATA_PATH", "VAL_DATA_PATH", "TEST_DATA_PATH", "NAME",
                                                   "HARD_NEGATIVES_RUN")}
    paths |= {"RETRIEVER.DISTILL.TEACHER_RUN": cfg.RETRIEVER.DISTILL.TEACHER_RUN,
              "RETRIEVER.RERANK.RUN": cfg.RETRIEVER.RERANK.RUN, "RETRIEVER.MODEL.MODEL_PATH": m.MODEL_PATH}
    for key, value in paths.items():
        if value is not None and not isinstance(value, str):
            raise InputError(f"config: {key} must be a string path or None, got {value!r}")
