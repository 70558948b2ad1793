"""Checkpoints in Hugging Face format: every encoder a folder that `transformers` loads as it is.

<checkpoint>/
    query/              AutoModelForMaskedLM + AutoTokenizer (safetensors); the only encoder when shared
    context/            the context encoder, when not shared
    cross/              AutoModelForSequenceClassification + tokenizer (BIENCODER_TYPE cross)
    heads.safetensors   the heads' own weights (dense projection, late-interaction projection), if any
    hybridpqa.json      what the folders are: model type, heads, encoding settings, fusion
    encoding.json       EncodingSettings (modeling.encoding), also inside hybridpqa.json
    config.yaml         the run's full config
    README.md           model card (modeling.card)

Older checkpoints (`model.pt` + `backbone/` + `tokenizer/`) still load. Nothing here unpickles:
safetensors and JSON only, and `model.pt` through torch's weights_only loader.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from HybridPQA.errors import InputError
from HybridPQA.files import disk_error, file_digest, load_torch, publish_dir, write_atomic
from HybridPQA.modeling.card import CardFacts, write_card
from HybridPQA.modeling.encoding import EncodingSettings
from HybridPQA.modeling.manifest import CONFIG_FILE, FILES, write_manifest
from HybridPQA.modeling.manifest import read_manifest as read_description
from HybridPQA.scoring import Fusion

log = logging.getLogger(__name__)
MANIFEST = FILES["checkpoint"]
HEADS_FILE = "heads.safetensors"
LEGACY_WEIGHTS = "model.pt"


def is_checkpoint(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file() or (Path(path) / LEGACY_WEIGHTS).is_file()


def read_manifest(path: Path) -> dict | None:
    """hybridpqa.json of a checkpoint, None for an old `model.pt` one."""
    return read_description(path, "checkpoint", ("folders",))


def folders(model) -> dict[str, torch.nn.Module]:
    """{folder name: the transformers model saved there}."""
    if hasattr(model, "classifier"):
        return {"cross": model.classifier}
    query, context = model.query_encoder.mlm, getattr(model.context_encoder, "mlm", None)
    out = {"query": query} if query is not None and query is not context else {}  # static queries: none or shared
    if context is not None:
        out["context"] = context
    return out


def head_weights(model) -> dict[str, torch.Tensor]:
    """The state-dict entries outside the transformers models (the heads' projections)."""
    seen = {id(p) for m in folders(model).values() for p in m.state_dict(keep_vars=True).values()}
    heads = {}
    for name, value in model.state_dict(keep_vars=True).items():
        if id(value) not in seen:  # a tensor tied to another (I3's generator bias) is saved once
            seen.add(id(value))
            heads[name] = value.detach().contiguous().cpu()
    return heads


@dataclass(frozen=True)
class Checkpointer:
    """Everything a checkpoint save writes beside the weights, fixed for a run (built once by
    modeling.build_checkpointer): the tokenizer, the config's text, the model's description for
    hybridpqa.json, the encoding settings, the fusion to search with and the card's facts."""
    tokenizer: object
    config_text: str
    model: dict  # biencoder_type, shared_encoder, ...: how hybridpqa.json describes the model
    encoding: EncodingSettings
    fusion: Fusion
    card: CardFacts

    def save(self, model, path: Path, fusion: Fusion | None = None) -> None:
        """Write the checkpoint into <path>.tmp, then publish it in one rename."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            for name, hf_model in folders(model).items():
                hf_model.save_pretrained(tmp / name)
                self.tokenizer.save_pretrained(tmp / name)
            heads = head_weights(model)
            if heads:
                save_file(heads, str(tmp / HEADS_FILE))
        except OSError as err:
            raise disk_error(tmp, err) from None
        manifest = write_manifest(tmp, "checkpoint", {
            "library": "HybridPQA", **self.model, "folders": list(folders(model)),
            "heads": sorted(getattr(model, "heads", ())), "encoding": asdict(self.encoding),
            "fusion": asdict(fusion or self.fusion), "weights": weight_digests(tmp)})
        write_atomic(tmp / CONFIG_FILE, self.config_text)
        self.encoding.save(tmp)
        write_card(tmp, self.card, self.config_text, manifest, home=path)
        publish_dir(tmp, path)

    def describe(self, path: Path, fusion: Fusion, results: dict[str, dict]) -> None:
        """After testing: record the fusion the checkpoint is searched with (tuned by FUSION.TUNE, or
        the configured one) and write its model card with the test results."""
        manifest = read_manifest(path)
        if manifest is not None:
            manifest = write_manifest(path, "checkpoint", {**manifest, "fusion": asdict(fusion)})
            write_card(path, self.card, self.config_text, manifest, results)


def weight_digests(path: Path) -> dict[str, str]:
    """{file relative to the checkpoint: sha256} of every weight file, recorded in hybridpqa.json."""
    return {f.relative_to(path).as_posix(): file_digest(f) for f in sorted(Path(path).rglob("*.safetensors"))}


def check_weights(path: Path, manifest: dict) -> None:
    """Every weight file is the one the checkpoint was saved with (its sha256 in hybridpqa.json), so a
    file swapped between checkpoints, or between query/ and context/, is refused, not loaded."""
    recorded = manifest.get("weights")
    if recorded is None:
        log.info("%s: saved before weight digests were recorded; its weight files are not checked", path)
        return
    for name, digest in recorded.items():
        file = Path(path) / name
        if not file.is_file() or file_digest(file) != digest:
            raise InputError(f"{file}: missing or not the weights this checkpoint was saved with (sha256 differs from "
                             f"{MANIFEST}); the checkpoint is damaged or its files were swapped; use another")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:100] if str(err).strip() else err.__class__.__name__


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (OSError, ValueError, SafetensorError) as err:
        raise InputError(f"{file}: truncated or corrupt weights ({_first_line(err)}); "
                         "delete the checkpoint and use another, or retrain") from None


def load_weights(model, path: Path) -> None:
    """Load a checkpoint's folders and heads.safetensors into `model` (built from the same
    hybridpqa.json, e.g. to resume), or an old checkpoint's model.pt."""
    path = Path(path)
    if read_manifest(path) is None:  # the old format
        model.load_state_dict(load_torch(path / LEGACY_WEIGHTS))
        return
    for name, hf_model in folders(model).items():
        try:  # transformers reads its own folders (shards, renamed keys, tied weights)
            saved = type(hf_model).from_pretrained(path / name)
        except (OSError, ValueError, SafetensorError) as err:
            raise InputError(f"{path / name}: unreadable weights ({_first_line(err)}); delete the checkpoint and use "
                             "another, or retrain") from None
        hf_model.load_state_dict(saved.state_dict())
    load_heads(model, path)


def load_heads(model, path: Path) -> None:
    """heads.safetensors into `model`, whose transformers models came from the checkpoint's folders."""
    expected = set(head_weights(model))
    heads = _read_safetensors(path / HEADS_FILE) if expected or (path / HEADS_FILE).is_file() else {}
    if set(heads) != expected:
        raise InputError(f"{path / HEADS_FILE}: head weights {sorted(heads)[:3]} do not fit the model described by "
                         f"hybridpqa.json ({sorted(expected)[:3]}); the checkpoint is damaged or mixed")
    model.load_state_dict(heads, strict=False)
