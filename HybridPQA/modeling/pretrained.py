"""The one owner of a model to load for inference: a HybridPQA checkpoint folder, or any masked LM
(a folder or a hub name) used zero-shot. Every command and the Python API load through it, so a
checkpoint copied anywhere is searched, evaluated and explained alike.

    saved = SavedModel("output/run/checkpoints/step_000400")
    cfg = saved.config(overrides=["RETRIEVER.SOLVER.TEST_BATCH_SIZE", "8"])
    model, tokenizer, device, dtype = saved.load(cfg)
    fusion = saved.fusion(cfg)

The fusion has one rule: the checkpoint's own (hybridpqa.json, where training records the tuned
fusion after its test), else its run's fusion.json (a checkpoint from before that record), else the
config's.
"""
from __future__ import annotations

import logging
from pathlib import Path

from HybridPQA.config import load_config
from HybridPQA.errors import InputError
from HybridPQA.modeling.build import build_model, check_hub_name
from HybridPQA.modeling.encoding import EncodingSettings, build_encoding
from HybridPQA.modeling.saved import MANIFEST, is_checkpoint, read_manifest
from HybridPQA.precision import build_precision
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import build_device, quiet_libraries
from HybridPQA.scoring import Fusion, build_fusion

log = logging.getLogger(__name__)
CONFIG_FILE = "config.yaml"


class SavedModel:
    """`source`: a checkpoint directory, a transformers model folder or a hub name."""

    def __init__(self, source: str | Path):
        self.source = str(source)
        path = Path(self.source).expanduser()
        if not path.exists():
            check_hub_name(self.source)
        self.path = path if is_checkpoint(path) else None
        if self.path is None and path.is_dir() and not (path / "config.json").is_file():
            raise InputError(f"{self.source}: neither a HybridPQA checkpoint ({MANIFEST}) nor a transformers model "
                             "(config.json); give a checkpoint folder, a model folder or a hub name")
        self.manifest = read_manifest(self.path) if self.path is not None else None

    @property
    def is_checkpoint(self) -> bool:
        return self.path is not None

    def config(self, config: str | Path | None = None, overrides: list[str] = ()):
        """The config to load it with: a checkpoint's own config.yaml (or `config`), a plain model's
        defaults (or `config`) with PRETRAINED_MODEL_TYPE set to it; then `overrides` (KEY VALUE)."""
        if self.path is not None:
            if config is None and not (self.path / CONFIG_FILE).is_file():
                raise InputError(f"{self.path}: not a complete HybridPQA checkpoint (no {CONFIG_FILE}); give a "
                                 "directory under <run>/checkpoints/")
            return load_config(config or self.path / CONFIG_FILE, list(overrides), dotenv_path=None)
        return load_config(config, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", self.source, *overrides],
                           dotenv_path=None)

    @property
    def encoding(self) -> EncodingSettings | None:
        """The encoding settings the checkpoint was trained with (hybridpqa.json), None for a plain model."""
        if self.manifest is None or "encoding" not in self.manifest:
            return None
        return EncodingSettings.from_dict(self.manifest["encoding"], str(self.path / MANIFEST))

    def fusion(self, cfg) -> Fusion:
        """The fusion to search with: the checkpoint's own, else its run's fusion.json, else the config's."""
        if self.manifest is not None and self.manifest.get("fusion"):
            return Fusion.from_dict(self.manifest["fusion"], str(self.path / MANIFEST))
        run = RunDir.of_checkpoint(self.path) if self.path is not None else None
        if run is not None and run.fusion.is_file():
            log.info("hybrid fusion from %s", run.fusion)
            return Fusion.load(run.fusion)
        return build_fusion(cfg)

    def load(self, cfg, ranks=None):
        """(model, tokenizer, device, autocast dtype) for `cfg` (from `config`), the model on the device."""
        if self.encoding is not None and build_encoding(load_config(self.path / CONFIG_FILE, dotenv_path=None)) \
                != self.encoding:
            raise InputError(f"{self.path}: {CONFIG_FILE} and {MANIFEST} give different encoding settings; the "
                             "checkpoint is damaged or was edited by hand")
        device = build_device(cfg, ranks)
        with quiet_libraries():  # transformers' load reports and bars, in the API too
            model, tokenizer = build_model(cfg, checkpoint=self.path)
        dtype = build_precision(cfg, device, model)
        if hasattr(model, "to"):
            model.to(device)
        return model, tokenizer, device, dtype
