"""Models: `build_model` (modeling.build) turns the MODEL config into one; `modeling.saved` owns the
checkpoint folder (Hugging Face format) and `modeling.pretrained.SavedModel` loads one for inference.

BIENCODER_TYPE hybrid / dense / sparse -> BiEncoder (dense + late-interaction token vectors when
CROSS_INTERACTION), cross -> CrossEncoder, bm25 -> BM25 (no weights, no tokenizer).
"""
from HybridPQA.modeling.bm25 import BM25
from HybridPQA.modeling.build import build_checkpointer, build_model
from HybridPQA.modeling.cross import CrossEncoder
from HybridPQA.modeling.encode import tokenize
from HybridPQA.modeling.encoder import BiEncoder, HybridEncoder

__all__ = ["BM25", "BiEncoder", "CrossEncoder", "HybridEncoder", "build_checkpointer", "build_model", "tokenize"]
