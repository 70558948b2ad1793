"""What a model was trained for (`ModelKind`), read from its own files (`model_kind`): a checkpoint of
ours, a masked LM, or a sentence encoder without an MLM head, whose sentence-transformers files set
its zero-shot defaults (pooling, max length, normalisation) beneath any config."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.heads import DENSE, HYBRID, SPARSE, scorers
from HybridPQA.modeling.saved import is_checkpoint

log = logging.getLogger(__name__)
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
