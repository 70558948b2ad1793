"""Every configuration key, declared once, with its default and meaning.

The key schema is the original HybridPQA code's, so its experiment YAMLs load unchanged;
keys marked "(new)" are ours. An experiment YAML holds only the keys it changes
(`_BASE_: other.yaml` inherits another file). Merge order, later wins:
defaults < experiment YAML < `.env` (HPQA__SECTION__KEY=value) < command-line KEY VALUE.
Cross-field checks live in `HybridPQA.config.validate`.
"""
from yacs.config import CfgNode as CN

_C = CN()

_C.EXP = "default"  # run name: the run directory is <path_output>/<EXP>/
_C.SEED = 42  # seeds python, numpy and torch; data order and negative sampling derive from it
_C.DEVICE = "auto"  # "auto" or None (cuda if available, else cpu) | "cpu" | "cuda" | "cuda:N"
# (new) autocast precision: "auto" | "fp32" | "bf16" | "fp16" (CUDA only, with a GradScaler).
# "auto": on CUDA bf16 where the GPU supports it; on CPU bf16 only where a probe of the model's
# vocabulary projection measures it faster than fp32 (AVX512-BF16 / AMX: ~1.7x faster; AVX2-only:
# ~30-100x slower), else fp32. The log says what was chosen, and the probe's two speeds.
_C.PRECISION = "auto"
_C.FP16 = None  # the original code's key: True = PRECISION fp16; None = PRECISION decides
_C.BF16 = None  # True = PRECISION bf16, False = PRECISION fp32; None = PRECISION decides
# (new) data-parallel training under torchrun (DDP; gloo on CPU, nccl on CUDA): TRAIN_BATCH_SIZE is
# the global batch, split evenly over the processes; rank 0 writes and evaluates
_C.DISTRIBUTED = False
_C.NUM_THREADS = 0  # (new) torch intra-op threads; 0 = the cores this process may use (its CPU affinity)

# (new) experiment tracking beyond <run>/metrics.jsonl (engine.tracking): any of "tensorboard"
# (<run>/tensorboard/) and "wandb" (<run>/wandb/; WANDB_MODE=offline works without an account)
_C.LOG = CN()
_C.LOG.BACKENDS = ()
_C.LOG.WANDB_PROJECT = "hybridpqa"

_C.RETRIEVER = CN()
_C.RETRIEVER.DO_TRAIN = True  # train on DATA.TRAIN_DATA_PATH, selecting on DATA.VAL_DATA_PATH
_C.RETRIEVER.DO_TEST = True  # evaluate the best checkpoint (or the zero-shot model) on DATA.TEST_DATA_PATH
_C.RETRIEVER.COMPUTE_FLOPS = True  # encoder GFLOPs per query and per context via calflops, in results
_C.RETRIEVER.MEASURE_COST = True  # (new) a test split's cost columns: FLOPs and the 50-query latency; False: neither
# write `hybridpqa explain` pages (HTML + text) for 5 test questions and their top hit, in results/<split>.explain/
_C.RETRIEVER.VISUALIZE = False

# -----------------------------------------------------------------------------
# Data. Paths are relative to --path_data. A path is a `.csv` (hetPQA TSV), a `.json`
# (original HybridPQA records) or a BEIR qrels file `qrels/<split>.tsv` (corpus.jsonl and
# queries.jsonl are read from the BEIR folder). None = no such split.
# -----------------------------------------------------------------------------
_C.RETRIEVER.DATA = CN()
_C.RETRIEVER.DATA.NAME = "product-qa"  # dataset label, recorded in results
_C.RETRIEVER.DATA.TRAIN_DATA_PATH = "train.json"
_C.RETRIEVER.DATA.VAL_DATA_PATH = "dev.json"
_C.RETRIEVER.DATA.TEST_DATA_PATH = "test.json"
# (new) a corpus file (BEIR corpus.jsonl, .jsonl of {id, text}, .tsv of id<TAB>text) whose ids the
# `positive` / `negatives` of a pairs file (.jsonl / .csv / .tsv) name, instead of texts; None = texts
_C.RETRIEVER.DATA.CORPUS_PATH = None
# (new) BEIR's ignore_identical_ids: drop a retrieved document whose id is the query's own (ArguAna, Quora)
_C.RETRIEVER.DATA.IGNORE_IDENTICAL_IDS = False
_C.RETRIEVER.DATA.NUM_POSITIVE_CONTEXTS = 1  # positives per training question (sampled each epoch)
# contexts per training question: positives + hard negatives; missing negatives are filled
# with random contexts of other questions (never one of the question's positives)
_C.RETRIEVER.DATA.NUM_TOTAL_CONTEXTS = 5
# The paper's product-QA text options. Off by default, since they rewrite any other text (BRCA1 ->
# "BRCA1 inches", 3x4 -> "length 3 x width 4"); the product-QA configs (quickstart.yaml, experiments/
# hybrid.yaml) turn them on, as the original code's defaults did.
_C.RETRIEVER.DATA.INSERT_SOURCE = False  # prepend the evidence source label ("review ...")
_C.RETRIEVER.DATA.NORMALIZE = False  # the paper's cleanup of quotes, units and numbers (contexts)
_C.RETRIEVER.DATA.NORMALIZE_NUMBERS = False  # (new) also replace digits by "number", as the paper did
_C.RETRIEVER.DATA.FLATTEN_ATTRIBUTE = False  # attribute pseudo-JSON -> "key : value" text (flatten-json)
_C.RETRIEVER.DATA.COUNT = None  # keep only the first N questions of each split (debugging); None = all
# (new) hold out this fraction of the training questions as the val split, chosen by a hash of
# the question id (the same questions on every machine); VAL_DATA_PATH must then be None
_C.RETRIEVER.DATA.VAL_FROM_TRAIN = 0.0
# (new) TREC run over the training questions (e.g. runs/train.sparse.trec of `hybridpqa evaluate
# --split=train`): its top HARD_NEGATIVES_DEPTH documents that are not positives are the hard negatives
_C.RETRIEVER.DATA.HARD_NEGATIVES_RUN = None
_C.RETRIEVER.DATA.HARD_NEGATIVES_DEPTH = 50

# -----------------------------------------------------------------------------
# Model: one masked-LM backbone per side feeds a dense and a sparse (SPLADE) head.
# -----------------------------------------------------------------------------
_C.RETRIEVER.MODEL = CN()
_C.RETRIEVER.MODEL.MODEL_PATH = None  # checkpoint directory to load weights from; None = pretrained
_C.RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE = "bert-base-uncased"  # hub name or local path of a BERT-like MLM
# "hybrid" | "dense" | "sparse": bi-encoders; "cross": a cross-encoder reranker (BERT sequence
# classification over the pair); "bm25": no neural model, RETRIEVER.BM25 settings
_C.RETRIEVER.MODEL.BIENCODER_TYPE = "hybrid"
_C.RETRIEVER.MODEL.SHARED_ENCODER = False  # (new) one backbone for queries and contexts (siamese)
# late interaction (ColBERT-style), with BIENCODER_TYPE "dense" and SOLVER.LEVEL "seq": token vectors
# through a PROJECTION_DIM projection (None = hidden size), [Q]/[D] markers, MaxSim summed over query tokens
_C.RETRIEVER.MODEL.CROSS_INTERACTION = False
_C.RETRIEVER.MODEL.POOLING = "cls"  # dense head pooling: "cls" | "mean"
_C.RETRIEVER.MODEL.PROJECTION_DIM = None  # dense head: linear projection to this size; None = hidden size
_C.RETRIEVER.MODEL.QUESTION_MAX_LENGTH = 128  # tokens, truncation; batches are padded dynamically
_C.RETRIEVER.MODEL.CONTEXT_MAX_LENGTH = 128
_C.RETRIEVER.MODEL.AGG = "max"  # sparse head pooling over tokens: "max" (SPLADE-max) | "sum"
_C.RETRIEVER.MODEL.TOP_K = 768  # sparse head: keep the K largest term weights; None = keep all
# (new) vocabulary entries the sparse head may never use: any of "special", "punctuation",
# "stopwords" (NLTK English word pieces). The paper masks all three.
_C.RETRIEVER.MODEL.VOCAB_MASK = ("special", "punctuation", "stopwords")
_C.RETRIEVER.MODEL.DO_LOWER_CASE = True  # passed to the tokenizer
_C.RETRIEVER.MODEL.DROPOUT = None  # backbone hidden + attention dropout; None = the checkpoint's own
# (new) a backbone without an MLM head (a sentence encoder such as all-MiniLM-L6-v2) gets one: a
# transform (dense + GELU + LayerNorm) and a decoder tied to the word embeddings. The transform
# starts "random" (transformers' init) or as the "identity" (dense = I, bias 0: logits start as the
# hidden state's similarity to each word embedding).
_C.RETRIEVER.MODEL.MLM_HEAD_INIT = "identity"
# (new) masked-LM warm-up before contrastive training, on the training data's texts (queries and
# documents), 15 % of word pieces masked: STEPS optimizer steps of BATCH_SIZE texts at LR, training
# the MLM "head" only or "all" of the model; 0 = none.
_C.RETRIEVER.MODEL.MLM_WARMUP = CN()
_C.RETRIEVER.MODEL.MLM_WARMUP.STEPS = 0
_C.RETRIEVER.MODEL.MLM_WARMUP.TRAIN = "head"
_C.RETRIEVER.MODEL.MLM_WARMUP.BATCH_SIZE = 32
_C.RETRIEVER.MODEL.MLM_WARMUP.LR = 1e-4
_C.RETRIEVER.MODEL.MLM_WARMUP.MAX_LENGTH = 128
# (new) "transformer": queries run the backbone | "static": inference-free queries (SPLADE-doc,
# sentence-transformers' SparseStaticEmbedding): a query's sparse vector is a trainable weight per
# query token, initialised from the IDF of the training contexts (zero-shot `evaluate`: of the
# evaluated corpus), and its dense vector (STATIC_DENSE) the mean of trainable token embeddings
# (LightRetriever). Needs SHARED_ENCODER False, except for a
# hybrid with STATIC_DENSE transformer: then one transformer encodes documents and queries' dense
# side, and only the sparse side of a query is inference-free (lexical: no query expansion).
_C.RETRIEVER.MODEL.QUERY_ENCODER = "transformer"
_C.RETRIEVER.MODEL.STATIC_DENSE = "embedding"  # static queries' dense side: "embedding" | "transformer" (POOLING)
# (new) I3 (Dong et al. 2023): document-side implicit interaction. A query reconstructor (one BERT
# layer over SLOTS [MASK] slots, cross-attending to the document's CLS) and an interactor (one BERT
# layer over [CLS ; mean(slots)]) give the dense vector; with SPARSE the interactor's output also
# conditions the SPLADE expansion. Computed from the document alone, so indexed like any vector.
_C.RETRIEVER.MODEL.IMPLICIT_INTERACTION = False
_C.RETRIEVER.MODEL.I3 = CN()
_C.RETRIEVER.MODEL.I3.SLOTS = 32
_C.RETRIEVER.MODEL.I3.SPARSE = True  # hybrid/sparse: condition the document's expansion on the interactor
# the slots' reconstruction target (an MLM head over the slots, cross-entropy per slot): "questions"
# (the training questions whose positive the context is), "title" (the context's first sentence or
# title), "questions-or-title" (the questions, else the first sentence), "none" (no reconstruction
# loss); contexts without a target get no loss
_C.RETRIEVER.MODEL.I3.TARGETS = "questions"
_C.RETRIEVER.MODEL.I3.RECON_WEIGHT = 1.0  # beta at epoch 0
_C.RETRIEVER.MODEL.I3.RECON_DECAY = 10.0  # beta = RECON_WEIGHT * RECON_DECAY ** -epoch (I3: 10 ** -epoch)

# -----------------------------------------------------------------------------
# Solver: loss, schedule, evaluation. Steps are optimizer steps.
# -----------------------------------------------------------------------------
_C.RETRIEVER.SOLVER = CN()
_C.RETRIEVER.SOLVER.TRAIN_BATCH_SIZE = 8  # questions per micro-batch (each with NUM_TOTAL_CONTEXTS contexts)
_C.RETRIEVER.SOLVER.TEST_BATCH_SIZE = 32  # questions per encoding batch at evaluation
_C.RETRIEVER.SOLVER.TEST_CTX_BSZ = 64  # contexts per encoding batch at evaluation
_C.RETRIEVER.SOLVER.TOTAL_TRAIN_STEPS = 1000
_C.RETRIEVER.SOLVER.NUM_STEP_PER_EVAL = 200  # evaluate on the val split (and checkpoint) every N steps
_C.RETRIEVER.SOLVER.CP_SAVE_LIMIT = 1  # keep the N best checkpoints by SELECT_METRIC (plus `last`)
_C.RETRIEVER.SOLVER.SELECT_METRIC = "mrr@5"  # (new) ranx metric of the hybrid/only scorer that picks the best
_C.RETRIEVER.SOLVER.LOG_STEPS = 10  # (new) write a metrics.jsonl line every N steps
_C.RETRIEVER.SOLVER.LEVEL = "pooled"  # "pooled": one vector per text | "seq": token vectors (late interaction)
_C.RETRIEVER.SOLVER.BROADCAST = "global"  # "local": own contexts only | "global": every context in the batch
_C.RETRIEVER.SOLVER.FUNC = "dot"  # similarity: "dot" | "cosine"
# (new) the objective of each head (losses.py), beside FLOPS and distillation:
#   "contrastive": in-batch softmax cross-entropy, query -> document (InfoNCE, the paper's);
#   "symmetric-infonce": plus document -> query; "cosent": CoSENT over each question's graded pairs;
#   Sentence-BERT's "softmax" (a linear classifier over (u, v, |u-v|[, u*v]) predicting the graded
#   label), "cosine-mse" (cosine similarity regressed onto label / (NUM_LABELS - 1)) and "triplet"
#   (margin over distances). The hybrid loss (HYBRID_LOSS_WEIGHT) uses contrastive, symmetric-infonce
#   or cosent; the other three work on vectors, per head.
_C.RETRIEVER.SOLVER.LOSS = "contrastive"
_C.RETRIEVER.SOLVER.NUM_LABELS = 3  # graded labels 0 .. NUM_LABELS - 1 (softmax classes, cosine-mse scale)
_C.RETRIEVER.SOLVER.CLASSIFIER_PRODUCT = False  # softmax: also the feature u * v
_C.RETRIEVER.SOLVER.TRIPLET_DISTANCE = "euclidean"  # "euclidean" | "cosine" (1 - cosine similarity)
_C.RETRIEVER.SOLVER.TRIPLET_MARGIN = 5.0  # Sentence-BERT's default for euclidean distance
_C.RETRIEVER.SOLVER.TRIPLET_MINING = "none"  # "none": each own negative | "batch-hard": hardest positive and negative
_C.RETRIEVER.SOLVER.TEMPERATURE = 0.5  # scores are divided by it in the contrastive loss
_C.RETRIEVER.SOLVER.TOP_RETRIEVE_COUNT = 100  # depth of each query's run when retrieving from a corpus
_C.RETRIEVER.SOLVER.ALPHA = 0.5  # hybrid score = ALPHA * dense + (1 - ALPHA) * sparse
_C.RETRIEVER.SOLVER.HYBRID_LOSS_WEIGHT = 0.0  # (new) weight of a contrastive loss on the fused score
_C.RETRIEVER.SOLVER.LAMBDA_QUERY = 3e-4  # FLOPS regulariser weight on query vectors
_C.RETRIEVER.SOLVER.LAMBDA_CONTEXT = 1e-4  # FLOPS regulariser weight on context vectors
# (new) lambdas grow as (step / REG_WARMUP_STEPS)^2 up to their value; None = TOTAL_TRAIN_STEPS
_C.RETRIEVER.SOLVER.REG_WARMUP_STEPS = None
# (new) recompute the backbone's layer activations in the backward pass: less memory, ~30 % more compute
_C.RETRIEVER.SOLVER.GRADIENT_CHECKPOINTING = False
# (new) GradCache (engine.step): encode a micro-batch this many questions (with their contexts) at a
# time, take the loss over all of them, then back-propagate chunk by chunk; the same gradients, with
# the activation memory of one chunk. None = off
_C.RETRIEVER.SOLVER.GRAD_CACHE_CHUNK = None

# -----------------------------------------------------------------------------
# (new) Fusion of the dense and sparse scores into the hybrid score, per query over all of
# its documents (the corpus, or its candidates), so corpus retrieval stays exact at any depth.
# -----------------------------------------------------------------------------
_C.RETRIEVER.FUSION = CN()
_C.RETRIEVER.FUSION.METHOD = "linear"  # "linear": ALPHA * dense + (1 - ALPHA) * sparse | "rrf": sum 1 / (RRF_K + rank)
_C.RETRIEVER.FUSION.NORM = "none"  # linear only, per query before fusing: "none" | "min-max" | "z-score"
_C.RETRIEVER.FUSION.RRF_K = 60
# tune ALPHA (linear) or RRF_K (rrf) on the val split with ranx's optimize_fusion, maximising
# SOLVER.SELECT_METRIC; the result is saved in <run>/fusion.json and used for every split
_C.RETRIEVER.FUSION.TUNE = False

# -----------------------------------------------------------------------------
# (new) Training signals beyond in-batch negatives. Teacher scores come from a TREC run over the
# training questions' contexts (e.g. runs/train.cross.trec of a cross-encoder); its documents are
# also the hard negatives. Pairs the teacher did not score are left out of the distillation loss.
# -----------------------------------------------------------------------------
_C.RETRIEVER.DISTILL = CN()
_C.RETRIEVER.DISTILL.TEACHER_RUN = None  # path relative to --path_data (or absolute); None = off
_C.RETRIEVER.DISTILL.LOSS = "margin-mse"  # "margin-mse" (Hofstaetter et al.) | "kl" (listwise, own contexts)
_C.RETRIEVER.DISTILL.WEIGHT = 1.0  # weight of each head's distillation loss
_C.RETRIEVER.DISTILL.TEACHER_TEMPERATURE = 1.0  # "kl": teacher scores are divided by it
# self-distillation (BGE-M3): the detached fused score teaches the dense and sparse heads (KL over the
# in-batch scores), from SELF_START_STEP on; 0 = off
_C.RETRIEVER.DISTILL.SELF_WEIGHT = 0.0
_C.RETRIEVER.DISTILL.SELF_START_STEP = 0

# -----------------------------------------------------------------------------
# (new) BM25 (BIENCODER_TYPE "bm25", bm25s with Lucene's formula): corpus-level statistics over the
# split's documents; text lowercased, split into \w+ tokens (numbers kept), NLTK stopwords removed,
# Porter-stemmed.
# -----------------------------------------------------------------------------
_C.RETRIEVER.BM25 = CN()
_C.RETRIEVER.BM25.K1 = 0.9
_C.RETRIEVER.BM25.B = 0.4
_C.RETRIEVER.BM25.STEM = True
_C.RETRIEVER.BM25.STOPWORDS = True

# -----------------------------------------------------------------------------
# (new) Rerank a first-stage run instead of the whole corpus: with a split that has no candidate
# lists, each query's top DEPTH documents of RUN become its candidates. Needed by "cross" and late
# interaction on corpus splits; "{split}" in RUN is replaced by the split's name (dev, test, ...).
# -----------------------------------------------------------------------------
_C.RETRIEVER.RERANK = CN()
_C.RETRIEVER.RERANK.RUN = None  # TREC run, relative to --path_data (or absolute)
_C.RETRIEVER.RERANK.DEPTH = 100

# -----------------------------------------------------------------------------
# (new) Corpus indexes, used when a split has no candidate lists.
# -----------------------------------------------------------------------------
_C.RETRIEVER.INDEX = CN()
# Each head's top-k comes from an engine (retrieval.engines). Exact: "torch" (matmul) | "faiss"
# (IndexFlatIP); approximate: "hnsw" (faiss IndexHNSWFlat) | "hnsw-sq8" (faiss IndexHNSWSQ, 8-bit codes,
# hits re-scored exactly) | "ivf-pq" (faiss IndexIVFPQ). Settings per corpus size: configs/search/.
_C.RETRIEVER.INDEX.DENSE = "torch"
# exact: "exact" (the numba inverted index); approximate: "seismic" (pyseismic-lsr, TusKANNy/seismic) |
# "bmp" (block-max pruning, pisa-engine/BMP) | "pruned" (the inverted index of each document's PRUNED.DOC_TERMS
# largest weights, hits re-scored exactly)
_C.RETRIEVER.INDEX.SPARSE = "exact"
# query-term pruning for any sparse engine: each query's QUERY_TERMS largest terms are searched (0 = all);
# the candidate hybrid still scores its candidates with every term
_C.RETRIEVER.INDEX.QUERY_TERMS = 0
# the hybrid: "exact" fuses every document's two scores; "candidates" takes each head's top CANDIDATES
# from its engine, re-scores their union exactly with both heads, and fuses over the union (the
# normalisation statistics are the union's); the one that scales past memory
_C.RETRIEVER.INDEX.HYBRID = "exact"  # or, in a vector database (ENGINE), "native": the engine's own fusion
_C.RETRIEVER.INDEX.CANDIDATES = 200  # k': per head, under HYBRID candidates (at least the depth asked for; why 200: docs/benchmarks.md)
# documents (a fixed random sample, seeded) whose exact scores give each query's z-score mean and std
# (min-max: its min, with the candidates' max) under HYBRID candidates; 0 = the union of the
# candidates alone, a top-heavy sample that skews the fusion (docs/benchmarks.md)
_C.RETRIEVER.INDEX.NORM_SAMPLE = 1000
_C.RETRIEVER.INDEX.SPARSE_CANDIDATES = 0  # k' of the sparse head alone (0 = CANDIDATES)
_C.RETRIEVER.INDEX.DENSE_CANDIDATES = 0  # k' of the dense head alone (0 = CANDIDATES)
# where the documents' vectors live (HybridPQA.backends.STORES): "memory" (this process, the engines
# above) or a vector database, "qdrant" | "milvus" (retrieval.databases), whose hybrid is the union
# of each head's top CANDIDATES, re-scored exactly and fused with the model's fusion
_C.RETRIEVER.INDEX.STORE = "memory"
_C.RETRIEVER.INDEX.ENGINE = ""  # the old name of STORE, still accepted (moved into STORE)
# the database: "" = embedded in the index folder (Qdrant local mode, a Milvus Lite .db file), else a
# server's or a cluster's URL (its key from $QDRANT_API_KEY / $MILVUS_TOKEN, never from a file)
_C.RETRIEVER.INDEX.URI = ""
_C.RETRIEVER.INDEX.COLLECTION = ""  # "" = the index folder's name
_C.RETRIEVER.INDEX.BATCH = 256  # documents per write request
_C.RETRIEVER.INDEX.SAVE = True  # write <run>/index/<split>/ (sparse inverted index + dense vectors)
# Seismic's build and query parameters. N_POSTINGS and CENTROID_FRACTION are below Seismic's own
# defaults (3500, 0.1): on 2 cores those built 1.4x slower at 50 k documents (53.8 against 38.2 s) for
# +0.2 pt recall of the exact top-10, and the build grows with the square of a posting list's length
# (docs/benchmarks.md); raise them on machines with many cores
_C.RETRIEVER.INDEX.SEISMIC = CN()
_C.RETRIEVER.INDEX.SEISMIC.N_POSTINGS = 1000  # postings kept per term (up to 1.5x: MAX_FRACTION)
_C.RETRIEVER.INDEX.SEISMIC.CENTROID_FRACTION = 0.05  # blocks per posting list, as a fraction of N_POSTINGS
_C.RETRIEVER.INDEX.SEISMIC.MIN_CLUSTER_SIZE = 2
_C.RETRIEVER.INDEX.SEISMIC.SUMMARY_ENERGY = 0.4  # share of a block summary's mass kept
_C.RETRIEVER.INDEX.SEISMIC.MAX_FRACTION = 1.5
_C.RETRIEVER.INDEX.SEISMIC.DOC_CUT = 15
_C.RETRIEVER.INDEX.SEISMIC.QUERY_CUT = 20  # a query's largest terms searched
_C.RETRIEVER.INDEX.SEISMIC.HEAP_FACTOR = 0.7  # a block is skipped when its summary score < heap_factor * k-th best
# Block-max pruning: BSIZE documents per block (built), THRESHOLD stops when no block left can beat
# THRESHOLD x the k-th best (BMP's alpha; 1 = exact), QUERY_SHARE keeps the query terms holding that share
# of its weight (BMP's beta; 1 = all)
_C.RETRIEVER.INDEX.BMP = CN()
_C.RETRIEVER.INDEX.BMP.BSIZE = 32
_C.RETRIEVER.INDEX.BMP.COMPRESS_RANGE = False
_C.RETRIEVER.INDEX.BMP.THRESHOLD = 1.0
_C.RETRIEVER.INDEX.BMP.QUERY_SHARE = 1.0
_C.RETRIEVER.INDEX.PRUNED = CN()
_C.RETRIEVER.INDEX.PRUNED.DOC_TERMS = 64  # a document's largest weights kept in the pruned inverted index
_C.RETRIEVER.INDEX.HNSW = CN()
_C.RETRIEVER.INDEX.HNSW.M = 32  # neighbours per node
_C.RETRIEVER.INDEX.HNSW.EF_CONSTRUCTION = 80
_C.RETRIEVER.INDEX.HNSW.EF_SEARCH = 128  # raised to the depth asked for when smaller
_C.RETRIEVER.INDEX.IVF = CN()
_C.RETRIEVER.INDEX.IVF.NLIST = 0  # inverted lists; 0 = 4 sqrt(N)
_C.RETRIEVER.INDEX.IVF.NPROBE = 16
_C.RETRIEVER.INDEX.IVF.PQ_M = 16  # sub-quantisers (must divide the dense dimension)
_C.RETRIEVER.INDEX.IVF.PQ_BITS = 8

_C.RETRIEVER.SOLVER.OPTIMIZER = CN()
_C.RETRIEVER.SOLVER.OPTIMIZER.NAME = "AdamW"  # "AdamW" | "Adam"
_C.RETRIEVER.SOLVER.OPTIMIZER.WARMUP_STEPS = 200  # linear LR warm-up, then linear decay to 0
_C.RETRIEVER.SOLVER.OPTIMIZER.BASE_LR = 1e-5
# (new) learning rate of the parameters that do not come from the pretrained backbone (static query
# weights and embeddings, I3 layers, the softmax classifier, dense projections); None = BASE_LR
_C.RETRIEVER.SOLVER.OPTIMIZER.HEAD_LR = None
_C.RETRIEVER.SOLVER.OPTIMIZER.EPS = 1e-8
_C.RETRIEVER.SOLVER.OPTIMIZER.WEIGHT_DECAY = 0.0  # not applied to biases and LayerNorm weights
_C.RETRIEVER.SOLVER.OPTIMIZER.BETAS = (0.9, 0.999)
_C.RETRIEVER.SOLVER.OPTIMIZER.GRADIENT_ACCUMULATION_STEPS = 1  # micro-batches per optimizer step
_C.RETRIEVER.SOLVER.OPTIMIZER.MAX_GRAD_NORM = 1.0  # global gradient-norm clip; None = no clipping


def get_cfg_defaults() -> CN:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
