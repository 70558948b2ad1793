"""Encoding with exported ONNX graphs (modeling.onnx_export) in ONNX Runtime, no PyTorch model:
`OnnxEncoder(folder).encode("query" | "context", texts)` -> {head: stored vectors}, as Encoder.encode."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from HybridPQA.errors import InputError
from HybridPQA.heads import HEADS
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.encoding import EncodingSettings
from HybridPQA.modeling.onnx_export import FORMAT, MANIFEST


def is_onnx_export(source: str | Path) -> bool:
    return (Path(source).expanduser() / MANIFEST).is_file()


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder}: no {MANIFEST}; export one with `hybridpqa export --format=onnx`") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not readable JSON ({e}); export the model again") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}; export the model again")
    return manifest


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
        super().__init__(None, AutoTokenizer.from_pretrained(str(folder)), encoding, torch.device("cpu"), None,
                         batch_sizes, text)
        self.folder, self.manifest = folder, manifest
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        sessions = {}
        for graph in {g["file"] for g in self.manifest["graphs"].values()}:
            sessions[graph] = ort.InferenceSession(str(self.folder / graph), options,
                                                   providers=providers or ["CPUExecutionProvider"])
        self.sessions = {side: sessions[g["file"]] for side, g in self.manifest["graphs"].items()}
        self.outputs = {side: g["outputs"] for side, g in self.manifest["graphs"].items()}

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(h for h in HEADS if h in self.outputs["context"])

    def run(self, side: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """One batch through the side's graph -> {output name: array}."""
        values = self.sessions[side].run(None, {"input_ids": input_ids.astype(np.int64),
                                                "attention_mask": attention_mask.astype(np.int64)})
        return dict(zip(self.outputs[side], values))

    def encode(self, side: str, texts: list[str], batch_size: int | None = None,
               heads: tuple[str, ...] | None = None) -> dict:
        """{head: stored vectors} in input order (length-sorted batches, as Encoder.encode); the graph
        gives every head in one call, `heads` picks among them."""
        limit = self.encoding.max_length(side)
        ids = self.tokenizer(list(texts), truncation=True, max_length=limit, return_token_type_ids=False)["input_ids"]
        tally = self.truncated.setdefault(side, [0, 0])
        tally[0], tally[1] = tally[0] + sum(len(x) >= limit for x in ids), tally[1] + len(ids)
        order = np.argsort([len(x) for x in ids], kind="stable")
        size, parts = batch_size or self.batch_sizes[side == "context"], {}
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="np")
            out = self.run(side, batch["input_ids"], batch["attention_mask"])
            for head in heads or self.heads:
                parts.setdefault(head, []).append(HEADS[head].store(torch.from_numpy(out[head])))
        inverse = np.argsort(order)
        return {head: HEADS[head].concat(stored, inverse) for head, stored in parts.items()}
