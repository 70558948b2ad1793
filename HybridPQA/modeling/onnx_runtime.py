"""Encoding with exported ONNX graphs (modeling.onnx_export) in ONNX Runtime, no PyTorch model:
`OnnxEncoder(folder).encode("query" | "context", texts)` -> {head: stored vectors}, as Encoder.encode."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from HybridPQA.errors import InputError
from HybridPQA.files import digest_of, file_digest
from HybridPQA.heads import HEADS, SPARSE
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.encoding import EncodingSettings
from HybridPQA.modeling.manifest import has_manifest
from HybridPQA.modeling.manifest import read_manifest as read_description
from HybridPQA.modeling.onnx_export import MANIFEST


def is_onnx_export(source: str | Path) -> bool:
    return has_manifest(source, "onnx")


def read_manifest(folder: str | Path) -> dict:
    """The export's manifest, checked: its format, a graph (a plain file name in the folder, with its
    outputs) for each side, the encoding settings, the text options and each graph's sha256."""
    path = Path(folder) / MANIFEST
    manifest = read_description(folder, "onnx", ("graphs", "encoding", "digests", "text"))
    if manifest is None:
        raise InputError(f"{folder}: no {MANIFEST}; export one with `hybridpqa export --format=onnx`")
    wrong = [k for k in ("graphs", "encoding", "digests", "text") if not isinstance(manifest[k], dict)]
    if wrong:
        raise InputError(f"{path}: {', '.join(wrong)} not an object; the export is damaged: export the model again")
    for side in ("query", "context"):
        graph = manifest["graphs"].get(side)
        if not isinstance(graph, dict) or not isinstance(graph.get("file"), str) \
                or not isinstance(graph.get("outputs"), list) or not isinstance(graph.get("dims", {}), dict):
            raise InputError(f"{path}: graphs.{side} must give its file and outputs; export the model again")
        name = graph["file"]
        if Path(name).name != name or name.startswith(".") or not name.endswith(".onnx"):
            raise InputError(f"{path}: graphs.{side}.file {name!r} is not a graph file inside the export folder; "
                             "refused (export the model again)")
        if name not in manifest["digests"]:
            raise InputError(f"{path}: no digest for {name}; export the model again")
        unknown = [o for o in graph["outputs"] if o not in (*HEADS, "sparse_ids", "sparse_weights")]
        if unknown or not any(o in HEADS for o in graph["outputs"]):
            raise InputError(f"{path}: graphs.{side}.outputs {graph['outputs']} are not dense / sparse outputs; "
                             "export the model again")
    return manifest


def check_graph(folder: Path, side: str, graph: dict, manifest: dict, session, vocab: int) -> None:
    """A loaded graph's outputs are the manifest's, in its order and of its widths (the sparse one over
    the tokenizer's vocabulary), so no array is read as another."""
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    if names != graph["outputs"]:
        raise InputError(f"{folder / graph['file']}: outputs {names}, the manifest says {graph['outputs']}; "
                         "export the model again")
    for out in outputs:
        width = out.shape[-1] if out.shape else None
        want = graph.get("dims", {}).get(out.name, vocab if out.name == SPARSE else None)
        if out.name == SPARSE and want != vocab:
            raise InputError(f"{folder / MANIFEST}: the {side} sparse output is over {want} terms, the tokenizer has "
                             f"{vocab}; the export is damaged: export the model again")
        if isinstance(width, int) and want is not None and width != want:
            raise InputError(f"{folder / graph['file']}: output {out.name!r} is {width} wide, the manifest says "
                             f"{want}; the files do not belong together: export the model again")


class OnnxEncoder(Encoder):
    """An Encoder whose model is the graphs of an ONNX export, run by ONNX Runtime on the CPU (or
    `providers`); no PyTorch model is loaded. `threads`: intra-op threads (None: one per core);
    `text`: the text options `encode_raw` applies."""

    def __init__(self, folder: str | Path, batch_sizes: tuple[int, int] = (64, 64), text=None,
                 threads: int | None = None, providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("an ONNX export runs in onnxruntime: pip install HybridPQA[onnx]") from None
        from transformers import AutoTokenizer

        folder, manifest = Path(folder).expanduser(), read_manifest(folder)
        encoding = EncodingSettings.from_dict(manifest["encoding"], str(folder / MANIFEST))
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as err:  # noqa: BLE001 - a missing or damaged tokenizer file, in many kinds
            raise InputError(f"{folder}: its tokenizer does not load ({err.__class__.__name__}: "
                             f"{str(err).splitlines()[0][:100] if str(err) else ''}); export the model again") from None
        super().__init__(None, tokenizer, encoding, torch.device("cpu"), None, batch_sizes, text)
        self.folder, self.manifest = folder, manifest
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        sessions = {}
        for graph in {g["file"] for g in self.manifest["graphs"].values()}:
            file = self.folder / graph
            if not file.is_file():
                raise InputError(f"{file}: missing; the export is incomplete: export the model again")
            if file_digest(file) != manifest["digests"][graph]:
                raise InputError(f"{file}: not the graph this export wrote (its sha256 differs from {MANIFEST}); "
                                 "the files were swapped or changed: export the model again")
            try:
                sessions[graph] = ort.InferenceSession(str(file), options, providers=providers or ["CPUExecutionProvider"])
            except Exception as err:  # noqa: BLE001 - onnxruntime's own errors (a damaged graph, a refused provider)
                raise InputError(f"{file}: ONNX Runtime cannot load it ({str(err).splitlines()[0][:120]}); "
                                 "export the model again") from None
        self.sessions = {side: sessions[g["file"]] for side, g in self.manifest["graphs"].items() if side in ("query", "context")}
        self.outputs = {side: g["outputs"] for side, g in self.manifest["graphs"].items() if side in self.sessions}
        for side, graph in self.manifest["graphs"].items():
            if side in self.sessions:
                check_graph(folder, side, graph, manifest, self.sessions[side], len(tokenizer))

    @property
    def identity(self) -> str:
        """What names these graphs: the digest of their recorded sha256s (an index records it)."""
        return digest_of(self.manifest["digests"])

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(h for h in HEADS if h in self.outputs["context"])

    def run(self, side: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """One batch through the side's graph -> {output name: array}."""
        values = self.sessions[side].run(None, {"input_ids": input_ids.astype(np.int64),
                                                "attention_mask": attention_mask.astype(np.int64)})
        return dict(zip(self.outputs[side], values))

    def forward(self, side: str, heads: tuple[str, ...] | None = None):
        """The side's graph as the encoder's forward pass (the graph gives every head in one call)."""
        def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
            out = self.run(side, input_ids.numpy(), attention_mask.numpy())
            return {head: torch.from_numpy(out[head]) for head in heads or self.heads}
        return forward
