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

A plain model says what it was trained for (`model_kind`), and that sets its zero-shot defaults
beneath any config: a masked LM searches with its MLM head's term weights (sparse; its CLS vector
is untrained); a sentence encoder without an MLM head (all-MiniLM-L6-v2) with its own pooled dense
vector, pooling, max length and normalisation, read from its sentence-transformers files.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from HybridPQA.config import load_config
from HybridPQA.errors import InputError
from HybridPQA.files import digest_of, file_digest
from HybridPQA.heads import DENSE, HYBRID, SPARSE, scorers
from HybridPQA.modeling.build import build_model, check_hub_name
from HybridPQA.modeling.encoding import EncodingSettings, build_encoding
from HybridPQA.modeling.saved import MANIFEST, is_checkpoint, read_manifest
from HybridPQA.precision import build_precision
from HybridPQA.rundir import RunDir
from HybridPQA.runtime import build_device, quiet_libraries
from HybridPQA.scoring import Fusion, build_fusion

log = logging.getLogger(__name__)
CONFIG_FILE = "config.yaml"
ST_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}  # what the dense head can do


@dataclass(frozen=True)
class ModelKind:
    """What a model was trained for: "checkpoint" (ours), "masked-lm" or "sentence-encoder" (no MLM
    head); `settings` the KEY VALUE pairs it implies when used zero-shot, `source` what they are."""

    kind: str
    settings: tuple[str, ...] = ()
    source: str = ""

    def default_scorer(self, heads) -> tuple[str, str]:
        """(scorer, why): the scorer to search with when none is asked for, among the model's `heads`."""
        given = scorers(heads)
        wanted = {"masked-lm": SPARSE, "sentence-encoder": DENSE}.get(self.kind, given[0])
        if wanted not in given:
            return given[0], f"{given[0]}: the one this model's heads give"
        return wanted, {
            "checkpoint": "what this checkpoint was trained for" + (", with its own fusion" if wanted == HYBRID else ""),
            "masked-lm": "a masked LM used zero-shot gives trained term weights but an untrained CLS vector",
            "sentence-encoder": f"a sentence encoder without an MLM head, with its own {self.source}"}[self.kind]


def _model_file(source: str, name: str) -> dict | list | None:
    """A JSON file of a model folder (or hub model), None where it has none."""
    path = Path(source).expanduser() / name
    if not path.parent.is_dir():  # a hub name
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, name))
        except Exception:  # noqa: BLE001 - absent, or no hub: the model says nothing here
            return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def model_kind(source: str | Path) -> ModelKind:
    """A checkpoint of ours, a masked LM (an *ForMaskedLM architecture), or a sentence encoder without
    an MLM head, whose sentence-transformers files (modules.json, 1_Pooling/, sentence_bert_config.json)
    give its pooling, max length and normalisation."""
    if is_checkpoint(Path(source).expanduser()):
        return ModelKind("checkpoint")
    if not Path(source).expanduser().exists():
        check_hub_name(str(source))
    model_config = _model_file(str(source), "config.json")
    model_config = model_config if isinstance(model_config, dict) else {}
    architectures = model_config.get("architectures") or []
    architectures = [a for a in architectures if isinstance(a, str)] if isinstance(architectures, list) else []
    if not architectures or any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures):
        return ModelKind("masked-lm")
    if not any(a.endswith("Model") for a in architectures):  # a task head: a classifier, a QA or token head
        raise InputError(f"{source}: a {architectures[0]} (a task head), neither a masked LM nor a sentence encoder "
                         "(a *Model without a head); its CLS vector was never trained for retrieval. Use it as "
                         "RETRIEVER.MODEL.BIENCODER_TYPE cross, or give a masked LM or a sentence encoder")
    modules = _model_file(str(source), "modules.json")
    modules = modules if isinstance(modules, list) else ([] if modules is None else None)
    if modules is None or not all(isinstance(m, dict) for m in modules):
        raise InputError(f"{Path(str(source)) / 'modules.json'}: not a list of modules (sentence-transformers' "
                         "format); fix or remove the file")
    settings, said = ["RETRIEVER.MODEL.BIENCODER_TYPE", DENSE], []
    pooling_dir = next((m.get("path") for m in modules if str(m.get("type", "")).endswith(".Pooling")), None)
    if pooling_dir is not None and (not isinstance(pooling_dir, str) or ".." in Path(pooling_dir).parts
                                    or Path(pooling_dir).is_absolute()):
        raise InputError(f"{Path(str(source)) / 'modules.json'}: pooling path {pooling_dir!r} is not a folder inside "
                         "the model; fix the file")
    pooling = _model_file(str(source), f"{pooling_dir}/config.json") if pooling_dir else None
    pooling = pooling if isinstance(pooling, dict) else None
    if pooling is not None:
        mode = next((ST_POOLING.get(k) for k, on in pooling.items() if on is True and k.startswith("pooling_mode")),
                    None)
        if mode is None:
            log.warning("%s: its pooling (%s) is not cls or mean; the dense head uses mean pooling", source,
                        [k for k, on in pooling.items() if on is True])
        settings += ["RETRIEVER.MODEL.POOLING", mode or "mean"]
        said.append(f"{mode or 'mean'} pooling")
    st_config = _model_file(str(source), "sentence_bert_config.json")
    length = st_config.get("max_seq_length") if isinstance(st_config, dict) else None
    positions = model_config.get("max_position_embeddings")
    if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1
                               or (isinstance(positions, int) and length > positions)):
        raise InputError(f"{Path(str(source)) / 'sentence_bert_config.json'}: max_seq_length {length!r} must be a whole "
                         f"number from 1 to the model's {positions or 'maximum'} positions; fix the file")
    if isinstance(length, int) and length > 0:
        settings += ["RETRIEVER.MODEL.QUESTION_MAX_LENGTH", str(length), "RETRIEVER.MODEL.CONTEXT_MAX_LENGTH",
                     str(length)]
        said.append(f"{length} tokens")
    if any(str(m.get("type", "")).endswith(".Normalize") for m in modules):
        settings += ["RETRIEVER.SOLVER.FUNC", "cosine"]
        said.append("cosine")
    return ModelKind("sentence-encoder", tuple(settings), ", ".join(said) + " (from its sentence-transformers files)"
                     if said else "CLS pooling")


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
        self.kind = model_kind(self.source)

    @property
    def is_checkpoint(self) -> bool:
        return self.path is not None

    def identity(self) -> str | None:
        """One sha256 naming the weights: a checkpoint's recorded weight digests (hybridpqa.json), a
        model folder's weight files; None for a hub name or a checkpoint saved before digests. An
        index records it, so a model retrained at the same path is not searched against old vectors."""
        if self.manifest is not None:
            return digest_of(self.manifest["weights"]) if isinstance(self.manifest.get("weights"), dict) else None
        folder = Path(self.source).expanduser()
        weights = sorted(f for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern)) \
            if folder.is_dir() else []
        return digest_of({f.name: file_digest(f) for f in weights}) if weights else None

    def config(self, config: str | Path | None = None, overrides: list[str] = ()):
        """The config to load it with: a checkpoint's own config.yaml (or `config`), a plain model's
        defaults (or `config`) with PRETRAINED_MODEL_TYPE set to it; then `overrides` (KEY VALUE)."""
        if self.path is not None:
            if config is None and not (self.path / CONFIG_FILE).is_file():
                raise InputError(f"{self.path}: not a complete HybridPQA checkpoint (no {CONFIG_FILE}); give a "
                                 "directory under <run>/checkpoints/")
            return load_config(config or self.path / CONFIG_FILE, list(overrides), dotenv_path=None)
        return load_config(config, ["RETRIEVER.MODEL.PRETRAINED_MODEL_TYPE", self.source, *overrides],
                           dotenv_path=None, base=list(self.kind.settings))

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
