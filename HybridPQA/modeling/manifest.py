"""The description a saved model folder carries, written and read by one pair of functions for
both formats:

- "checkpoint": <checkpoint>/hybridpqa.json (format 2): the folders, heads, encoding settings,
  fusion and weight digests (modeling.saved);
- "onnx": <export>/hybridpqa_onnx.json (format "hybridpqa-onnx"): the graphs, their outputs and
  digests, the encoding settings and text options, the fusion and the model kind (modeling.onnx_export);

and the model's merged config beside it (config.yaml), read by the loader (modeling.pretrained).
"""
from __future__ import annotations

import json
from pathlib import Path

from HybridPQA.errors import InputError
from HybridPQA.files import write_atomic

CONFIG_FILE = "config.yaml"
FILES = {"checkpoint": "hybridpqa.json", "onnx": "hybridpqa_onnx.json"}
FORMATS = {"checkpoint": 2, "onnx": "hybridpqa-onnx"}
AGAIN = {"checkpoint": "the checkpoint is damaged", "onnx": "export the model again"}


def manifest_file(folder: str | Path, kind: str) -> Path:
    return Path(folder).expanduser() / FILES[kind]


def has_manifest(folder: str | Path, kind: str) -> bool:
    return manifest_file(folder, kind).is_file()


def write_manifest(folder: str | Path, kind: str, manifest: dict) -> dict:
    """`manifest` with its format, into `folder`'s description file (atomically) -> what was written."""
    manifest = {"format": FORMATS[kind], **{k: v for k, v in manifest.items() if k != "format"}}
    write_atomic(manifest_file(folder, kind), json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: str | Path, kind: str, required: tuple[str, ...] = ()) -> dict | None:
    """`folder`'s description of `kind`, its format checked and `required` keys present (one line
    naming the file otherwise); None where the folder has none."""
    file = manifest_file(folder, kind)
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{file}: not readable JSON ({err.__class__.__name__}); {AGAIN[kind]}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMATS[kind]:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{file}: format {found!r} is not {FORMATS[kind]!r}; {AGAIN[kind]}")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise InputError(f"{file}: no {', '.join(missing)}; written by an older or damaged version: {AGAIN[kind]}")
    return manifest


def read_config(folder: str | Path):
    """A checkpoint's own config.yaml as saved (a CfgNode; one line naming the file where it is
    missing or unreadable)."""
    from yacs.config import CfgNode

    file = Path(folder) / CONFIG_FILE
    if not file.is_file():
        raise InputError(f"{folder}: not a complete HybridPQA checkpoint (no {CONFIG_FILE}); give a directory under "
                         "<run>/checkpoints/")
    try:
        cfg = CfgNode.load_cfg(file.read_text(encoding="utf-8"))
        cfg.RETRIEVER.MODEL  # noqa: B018 - a config without it is not a checkpoint's
    except (ValueError, KeyError, AttributeError, UnicodeDecodeError) as err:
        raise InputError(f"{file}: unreadable checkpoint config ({err.__class__.__name__}); the checkpoint is "
                         "damaged") from None
    return cfg
