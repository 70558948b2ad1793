"""The one loader: every kind of model folder opened for inference, by every command, the pipeline
and the Python API, so a model copied anywhere is searched, evaluated and explained alike.

    saved = SavedModel("output/run/checkpoints/step_000400")   # or a masked LM, a sentence encoder,
    cfg = saved.config(overrides=["RETRIEVER.SOLVER.TEST_BATCH_SIZE", "8"])   # an ONNX export, a hub name
    encoder = saved.encoder(cfg)        # modeling.encode.Encoder (ONNX: an OnnxEncoder)
    fusion = saved.fusion(cfg)

What it opens (`format`):
- "checkpoint": a HybridPQA checkpoint (hybridpqa.json, config.yaml, the encoders' folders);
- "onnx": a `hybridpqa export --format=onnx` folder (hybridpqa_onnx.json), encoded in ONNX Runtime
  with no PyTorch model;
- "model": any transformers model folder or hub name used zero-shot: a masked LM, or a sentence
  encoder without an MLM head (modeling.kinds: what it was trained for sets its zero-shot defaults
  beneath any config).

The config has one rule (`config`): a checkpoint's or export's own config.yaml (or the user's
`config`), a plain model's defaults with what the model says of itself; then .env and the KEY VALUE
overrides. The fusion has one rule: the folder's own (hybridpqa.json, where training records the
tuned fusion after its test; an export's manifest), else its run's fusion.json, else the config's.
A hub name is checked once, here.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

from HybridPQA.config import load_config, with_overrides
from HybridPQA.data import build_text_options
from HybridPQA.errors import InputError
from HybridPQA.files import digest_of, file_digest
from HybridPQA.modeling.build import build_model, check_hub_name
from HybridPQA.modeling.encode import Encoder
from HybridPQA.modeling.encoding import EncodingSettings, build_encoding
from HybridPQA.modeling.kinds import ModelKind, model_kind
from HybridPQA.modeling.manifest import CONFIG_FILE, FILES, has_manifest, read_manifest
from HybridPQA.precision import build_precision
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import build_device, quiet_libraries
from HybridPQA.scoring import Fusion, build_fusion

log = logging.getLogger(__name__)
BACKENDS = ("torch", "onnx")


def build_encoder(model, tokenizer, cfg, device, dtype) -> Encoder:
    """The model's encoder with SOLVER's test batch sizes, the encoding settings and the text options."""
    s = cfg.RETRIEVER.SOLVER
    return Encoder(model, tokenizer, build_encoding(cfg), device, dtype, (s.TEST_BATCH_SIZE, s.TEST_CTX_BSZ),
                   build_text_options(cfg.RETRIEVER.DATA))


class SavedModel:
    """`source`: a checkpoint folder, an ONNX export folder, a transformers model folder or a hub name;
    `backend` "torch" or "onnx" says which it must be (None: whichever it is)."""

    def __init__(self, source: str | Path, backend: str | None = None):
        self.source = str(source)
        path = Path(self.source).expanduser()
        if backend not in (None, *BACKENDS):
            raise InputError(f"backend {backend!r}: choose {' or '.join(BACKENDS)}")
        onnx = has_manifest(path, "onnx")
        if backend == "torch" and onnx:
            raise InputError(f"{self.source}: an ONNX export ({FILES['onnx']}), which has no PyTorch model; use "
                             "--backend=onnx (or leave --backend out)")
        if backend == "onnx" and not onnx:
            raise InputError(f"{self.source}: no {FILES['onnx']}; export one with `hybridpqa export --format=onnx`")
        if not path.exists():
            check_hub_name(self.source)
        if onnx:  # checked whole (graphs, encoding, digests, text) before anything reads it
            from HybridPQA.modeling.onnx_runtime import read_manifest as read_export

            self.manifest = read_export(path)
        else:
            self.manifest = read_manifest(path, "checkpoint", ("folders",))
        self.format = "onnx" if onnx else "checkpoint" if self.manifest is not None or \
            (path / "model.pt").is_file() else "model"
        self.path = path if self.format != "model" else None
        if self.format == "model" and path.is_dir() and not (path / "config.json").is_file():
            raise InputError(f"{self.source}: neither a HybridPQA checkpoint ({FILES['checkpoint']}) nor a "
                             "transformers model (config.json); give a checkpoint folder, a model folder or a hub name")

    @property
    def is_checkpoint(self) -> bool:
        return self.format == "checkpoint"

    @cached_property
    def kind(self) -> ModelKind:
        """What the model was trained for (an export records its checkpoint's)."""
        if self.format != "onnx":
            return model_kind(self.source)
        try:
            return ModelKind(**{**self.manifest["kind"], "settings": tuple(self.manifest["kind"]["settings"])})
        except (KeyError, TypeError):
            raise InputError(f"{self.path / FILES['onnx']}: no valid 'kind'; export the model again") from None

    def identity(self) -> str | None:
        """One sha256 naming the weights: a checkpoint's recorded weight digests, an export's graph
        digests, a model folder's weight files; None for a hub name or a checkpoint saved before
        digests. An index records it, so a model retrained at the same path is not searched against
        old vectors."""
        if self.manifest is not None:
            recorded = self.manifest.get("digests" if self.format == "onnx" else "weights")
            return digest_of(recorded) if isinstance(recorded, dict) else None
        folder = Path(self.source).expanduser()
        weights = sorted(f for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern)) \
            if folder.is_dir() else []
        return digest_of({f.name: file_digest(f) for f in weights}) if weights else None

    def config(self, config: str | Path | None = None, overrides: list[str] = (), env: str | Path | None = None):
        """The config to load it with: a checkpoint's or export's own config.yaml (or `config`), a plain
        model's defaults (or `config`) with PRETRAINED_MODEL_TYPE set to it beneath what the model says
        of itself (`kind.settings`); then .env (`env`) and `overrides` (KEY VALUE)."""
        if self.path is None:
            return load_config(config, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", self.source, *overrides],
                               dotenv_path=env, base=list(self.kind.settings))
        own = self.path / CONFIG_FILE
        if config is None and not own.is_file():
            raise InputError(f"{self.path}: not a complete HybridPQA {'export' if self.format == 'onnx' else 'checkpoint'}"
                             f" (no {CONFIG_FILE}); give a directory under <run>/checkpoints/")
        cfg = load_config(config or own, dotenv_path=None, freeze=False)  # the file alone, read once
        if config is None and self.encoding is not None and build_encoding(cfg) != self.encoding:
            raise InputError(f"{self.path}: {CONFIG_FILE} and {FILES[self.format]} give different encoding settings; "
                             "the folder is damaged or was edited by hand")
        cfg = with_overrides(cfg, list(overrides), dotenv_path=env)
        if self.format == "onnx":
            self._check_export(cfg)
        return cfg

    @property
    def encoding(self) -> EncodingSettings | None:
        """The encoding settings the folder was saved with, None for a plain model."""
        if self.manifest is None or "encoding" not in self.manifest:
            return None
        return EncodingSettings.from_dict(self.manifest["encoding"], str(self.path / FILES[self.format]))

    def _check_export(self, cfg) -> None:
        """The config (with its overrides) leaves the text options and encoding settings the graphs fix."""
        from HybridPQA.data.text import TextOptions

        where = self.path / FILES["onnx"]
        try:
            text = TextOptions(**self.manifest["text"])
        except TypeError:
            raise InputError(f"{where}: text {self.manifest['text']} holds options HybridPQA does not know; export "
                             "the model again") from None
        if build_text_options(cfg.RETRIEVER.DATA) != text:
            raise InputError(f"{self.path}: the config or overrides change text options that the export fixes "
                             f"({asdict(text)}); export the model again with them")
        if build_encoding(cfg) != self.encoding:
            raise InputError(f"{self.path}: the overrides change encoding settings that the exported graphs fix "
                             f"({asdict(self.encoding)}); export the model again with them")

    def fusion(self, cfg) -> Fusion:
        """The fusion to search with: the folder's own, else its run's fusion.json, else the config's."""
        if self.manifest is not None and self.manifest.get("fusion"):
            return Fusion.from_dict(self.manifest["fusion"], str(self.path / FILES[self.format]))
        run = RunDir.of_checkpoint(self.path) if self.is_checkpoint else None
        if run is not None and run.fusion.is_file():
            log.info("hybrid fusion from %s", run.fusion)
            return Fusion.load(run.fusion)
        return build_fusion(cfg)

    def load(self, cfg, ranks=None):
        """(model, tokenizer, device, autocast dtype) for `cfg` (from `config`), the model on the device."""
        if self.format == "onnx":
            raise InputError(f"{self.source}: an ONNX export has no PyTorch model; load the checkpoint it came from")
        device = build_device(cfg, ranks)
        with quiet_libraries():  # transformers' load reports and bars, in the API too
            model, tokenizer = build_model(cfg, checkpoint=self.path, hub_checked=True)
        dtype = build_precision(cfg, device, model)
        if hasattr(model, "to"):
            model.to(device)
        return model, tokenizer, device, dtype

    def encoder(self, cfg, threads: int | None = None) -> Encoder:
        """The model ready to encode texts: an Encoder over the PyTorch model, or over the ONNX graphs."""
        if self.format == "onnx":
            from HybridPQA.modeling.onnx_runtime import OnnxEncoder

            s = cfg.RETRIEVER.SOLVER
            return OnnxEncoder(self.path, (s.TEST_BATCH_SIZE, s.TEST_CTX_BSZ), build_text_options(cfg.RETRIEVER.DATA),
                               threads)
        model, tokenizer, device, dtype = self.load(cfg)
        return build_encoder(model, tokenizer, cfg, device, dtype)
