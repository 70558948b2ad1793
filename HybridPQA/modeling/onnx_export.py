"""A HybridPQA bi-encoder as ONNX graphs that any ONNX runtime serves, one call giving every vector:

<out>/query.onnx, <out>/context.onnx   one graph per encoder side (one, encoder.onnx, when shared and dense only)
<out>/tokenizer files                  the model's tokenizer (tokenizer.json: `tokenizers` alone reads it)
<out>/hybridpqa_onnx.json              what each graph takes and gives, the max lengths, the similarity,
                                       the text options to apply before tokenising, each graph's sha256

Inputs: `input_ids` and `attention_mask` (int64, batch x length, both axes dynamic), the tokenizer's
output without token_type_ids. Outputs, float32, exactly what search uses:
  dense            (batch, D): pooled, projected and, for cosine models, unit length
  sparse           (batch, V): vocabulary weights, the mask, aggregation and top-k of the model applied
  sparse_ids       (batch, k) int64 and sparse_weights (batch, k): the k largest of `sparse` (--top_k)
Query-side markers are inserted inside the graph; inference-free query sides are their lookup tables.
The text options (`text`: NORMALIZE, INSERT_SOURCE, FLATTEN_ATTRIBUTE, ...) rewrite a text before it is
tokenised, so a runtime elsewhere applies them first (`data.text.TextOptions(**manifest["text"])`), as
`HybridRetriever.from_pretrained(folder)` does.
Inside the context graph the sparse head projects the vocabulary in fixed tiles, each tile's max over
the text taken before the next (heads.ONNX_VOCAB_TILE), so a corpus batch's (B, L, V) logits never
exist at once; the query graph projects it whole (a short text's logits are small). So a shared
encoder with a sparse head still gives two graphs.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from HybridPQA.errors import InputError
from HybridPQA.files import file_digest
from HybridPQA.heads import DENSE, HEADS, LATE, SPARSE
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.heads import ONNX_VOCAB_TILE, SpladeHead
from HybridPQA.modeling.manifest import FILES, write_manifest

MANIFEST = FILES["onnx"]
OPSET = 18


class SideGraph(nn.Module):
    """One side of a bi-encoder as the exported function: (input_ids, attention_mask) -> outputs."""

    def __init__(self, model: nn.Module, side: str, heads: tuple[str, ...], cosine: bool, top_k: int | None):
        super().__init__()
        self.model, self.side, self.heads, self.cosine, self.top_k = model, side, heads, cosine, top_k

    @property
    def output_names(self) -> list[str]:
        names = list(self.heads)
        return names + (["sparse_ids", "sparse_weights"] if self.top_k and SPARSE in self.heads else [])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        reps = self.model.encode(self.side, input_ids, attention_mask, self.heads)
        out = [HEADS[h].unit(reps[h]) if self.cosine else reps[h].float() for h in self.heads]
        if self.top_k and SPARSE in self.heads:
            sparse = out[self.heads.index(SPARSE)]
            weights, ids = sparse.topk(min(self.top_k, sparse.shape[-1]), dim=-1)
            out += [ids, weights]
        return tuple(out)


def graph_files(model: nn.Module, heads: tuple[str, ...] | None) -> dict[str, str]:
    """{side: file}: one graph per side, one for both when the encoder is shared and
    exports no sparse head."""
    if model.context_encoder is None and (SPARSE not in model.heads or heads is not None and SPARSE not in heads):
        return {"query": "encoder.onnx", "context": "encoder.onnx"}
    return {"query": "query.onnx", "context": "context.onnx"}


def export_onnx(encoder: Encoder, folder: str | Path, top_k: int | None = None, int8: bool = False,
                heads: tuple[str, ...] | None = None, **about) -> dict:
    """Write `encoder`'s graphs, tokenizer and manifest into `folder` -> the manifest. `int8`: the
    graphs' weights quantised to int8, activations at run time (onnxruntime.quantization's dynamic
    quantisation); `heads`: only these of the model's dense and sparse heads; `about`: more entries of the manifest (the retriever's fusion and kind)."""
    try:
        import onnx  # noqa: F401 - torch.onnx.export writes with it
    except ImportError:
        raise InputError("export --format=onnx needs onnx: pip install HybridPQA[onnx]") from None
    model, folder = copy.deepcopy(encoder.model).eval().float(), Path(folder)  # the caller's model is left as it is
    for module in model.modules():  # the additive mask: SDPA's traced boolean mask and NaN guard cost a corpus
        if isinstance(module, PreTrainedModel):  # graph ~20 % of its time in Where / IsNaN nodes (MiniLM, int8)
            module.set_attn_implementation("eager")
    if LATE in model.heads:
        raise InputError("export --format=onnx: late-interaction (token vector) models are not exported; "
                         "export a hybrid, dense or sparse checkpoint")
    folder.mkdir(parents=True, exist_ok=True)
    files, graphs = graph_files(model, heads), {}
    sample = encoder.tokenizer(["a short text", "a somewhat longer second text of the sample batch"], padding=True,
                               return_tensors="pt", return_token_type_ids=False)
    for side, name in files.items():
        if name in graphs.values():
            graphs[side] = graphs["query"]
            continue
        side_encoder = model.query_encoder if side == "query" else model.document_encoder
        side_heads = tuple(h for h in (DENSE, SPARSE) if h in side_encoder.heads and (heads is None or h in heads))
        if not side_heads:
            raise InputError(f"export --format=onnx: the {side} encoder has none of the heads {list(heads or [])}")
        for head in model.modules():
            if isinstance(head, SpladeHead):
                head.onnx_tile = ONNX_VOCAB_TILE if side == "context" else None
        graph = SideGraph(model, side, side_heads, encoder.encoding.cosine, top_k)
        axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}}
        axes.update({o: {0: "batch"} for o in graph.output_names})
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's notes on traced shapes
            torch.onnx.export(graph, (sample["input_ids"], sample["attention_mask"]), str(folder / name),
                              input_names=["input_ids", "attention_mask"], output_names=graph.output_names,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        if int8:
            quantize(folder / name)
        with torch.no_grad():
            shapes = graph(sample["input_ids"], sample["attention_mask"])
        graphs[side] = {"file": name, "outputs": graph.output_names,
                        "dims": {o: int(t.shape[-1]) for o, t in zip(graph.output_names, shapes) if o in HEADS}}
    encoder.tokenizer.save_pretrained(folder)
    return write_manifest(folder, "onnx", {
        "version": 1, "graphs": graphs,
        "inputs": ["input_ids", "attention_mask"],
        "max_length": {"query": encoder.encoding.max_length("query"), "context": encoder.encoding.max_length("context")},
        "similarity": encoder.encoding.similarity, "sparse_top_k": top_k,
        "text": asdict(encoder.text) if encoder.text is not None else {},
        "digests": {g["file"]: file_digest(folder / g["file"]) for g in graphs.values()},
        "quantization": "int8 weights, dynamic activations (onnxruntime.quantization)" if int8 else None, "encoding": asdict(encoder.encoding),
        "outputs": {
            DENSE: "(batch, D) float32: the dense vector" + (", unit length" if encoder.encoding.cosine else ""),
            SPARSE: "(batch, V) float32: weight of each vocabulary term (token id), zero where absent",
            "sparse_ids": "(batch, k) int64: token ids of the k largest sparse weights",
            "sparse_weights": "(batch, k) float32: those weights, largest first"},
        **about,
    })


def quantize(path: Path) -> None:
    """The graph at `path` with int8 weights (MatMul / Gemm), activations quantised per call."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise InputError("export --int8 quantises with onnxruntime: pip install HybridPQA[onnx]") from None
    quantized = path.with_name(path.stem + ".int8.onnx")
    quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
    quantized.replace(path)
