"""Model soups (Wortsman et al. 2022; KaLM-V2's last stage): average the weights of checkpoints fine-tuned from
one start.

An ingredient is a folder of safetensors weights: a sentence-transformers folder exported by embedlab-train
(transformer at the root, optionally `2_Dense/`, shards included) or a peft adapter folder
(`adapter_model.safetensors`). Every weight file is averaged tensor by tensor (float32 accumulation, cast back to
the stored dtype; non-float tensors are copied from the first ingredient); every other file (configs, tokenizer,
modules.json) is copied from the first ingredient, so the soup opens exactly like its ingredients.

uniform: every ingredient with equal weight.
greedy:  ingredients sorted by their own dev score, best first; each joins the soup only if the soup's dev score
         does not drop (the ties join, as in the paper).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from embedlab.errors import ConfigError, DataFormatError
from embedlab.io import atomic_path

log = logging.getLogger(__name__)

# Config entries that say where or with what a checkpoint was written, not what it is: they may differ.
_PROVENANCE_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "base_model_name_or_path"}
_CONFIG_FILES = ("config.json", "adapter_config.json", "modules.json", "2_Dense/config.json", "1_Pooling/config.json")
_UNSAFE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def weight_files(folder: Path) -> list[str]:
    """The safetensors files of a checkpoint folder, relative to it, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"soup ingredient {folder} is not a folder")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.safetensors"))
    if not files:
        pickled = [str(p.relative_to(folder)) for pattern in _UNSAFE_WEIGHTS for p in folder.rglob(pattern)]
        hint = f" (found {pickled[:3]}: re-save with safetensors)" if pickled else ""
        raise ConfigError(f"soup ingredient {folder} holds no .safetensors weights{hint}")
    return files


def _structure(path: Path) -> dict:
    """A config file's entries that define the architecture."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, None, f"invalid JSON ({e.msg})") from None
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in _PROVENANCE_KEYS}
    return {"": data}


def _tensor_layout(path: Path) -> dict[str, tuple]:
    """Tensor name -> (shape, dtype) of a safetensors file, from its header alone."""
    try:
        with safe_open(path, "pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118
    except SafetensorError as e:
        raise DataFormatError(path, None, None, f"not a readable safetensors file ({e})") from None


def check_compatible(folders: Sequence[Path]) -> list[str]:
    """The weight files shared by every ingredient; one error names the first folder, file and key that differ
    from the first ingredient's (file set, config entry, tensor name, shape or dtype)."""
    if len(folders) < 1:
        raise ConfigError("a soup needs at least one ingredient")
    first = Path(folders[0])
    files = weight_files(first)
    layout = {name: _tensor_layout(first / name) for name in files}
    configs = {c: _structure(first / c) for c in _CONFIG_FILES if (first / c).exists()}
    for folder in map(Path, folders[1:]):
        other = weight_files(folder)
        if other != files:
            diff = sorted(set(files) ^ set(other))
            raise ConfigError(f"soup ingredient {folder}: weight file {diff[0]} differs from {first} ({files})")
        for cname, reference in configs.items():
            if not (folder / cname).exists():
                raise ConfigError(f"soup ingredient {folder}: {cname} is missing (present in {first})")
            mine = _structure(folder / cname)
            for key in sorted(set(reference) | set(mine)):
                if reference.get(key) != mine.get(key):
                    raise ConfigError(
                        f"soup ingredient {folder}: {cname} key '{key}' is {mine.get(key)!r}, "
                        f"but {reference.get(key)!r} in {first}: not the same architecture"
                    )
        for name in files:
            mine = _tensor_layout(folder / name)
            for key in sorted(set(layout[name]) | set(mine)):
                if key not in mine or key not in layout[name]:
                    where = "missing from" if key not in mine else "absent from the first ingredient but in"
                    raise ConfigError(f"soup ingredient {folder}: tensor '{key}' of {name} is {where} it ({first})")
                if mine[key] != layout[name][key]:
                    raise ConfigError(
                        f"soup ingredient {folder}: tensor '{key}' of {name} has shape/dtype {mine[key]}, "
                        f"but {layout[name][key]} in {first}"
                    )
    return files


def average(folders: Sequence[Path], output: Path) -> Path:
    """Write the uniform soup of `folders` to `output` atomically (a copy of the first with averaged weights)."""
    folders = [Path(f) for f in folders]
    files = check_compatible(folders)
    with atomic_path(output) as tmp:
        shutil.copytree(folders[0], tmp, ignore=shutil.ignore_patterns("*.safetensors"))
        for name in files:
            with safe_open(folders[0] / name, "pt") as f:
                metadata = f.metadata()
                keys = list(f.keys())
                first = {k: f.get_tensor(k) for k in keys}
            sums = {k: t.to(torch.float32) for k, t in first.items() if t.is_floating_point()}
            for folder in folders[1:]:
                with safe_open(folder / name, "pt") as f:
                    for k in sums:
                        sums[k] += f.get_tensor(k).to(torch.float32)
            soup = {k: (sums[k] / len(folders)).to(t.dtype) if k in sums else t for k, t in first.items()}
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            save_file(soup, str(tmp / name), metadata=metadata)
    return Path(output)


@dataclass
class SoupRecord:
    """What soup.json says: the ingredients, their dev scores, which were kept, and the soup's dev score."""

    method: str
    ingredients: list[dict] = field(default_factory=list)  # {"path", "dev", "kept", "soup_dev"}
    dev: float | None = None  # the final soup's dev score (greedy; uniform when a dev metric is given)

    @property
    def kept(self) -> list[str]:
        return [i["path"] for i in self.ingredients if i["kept"]]


def greedy(
    folders: Sequence[Path], metric: Callable[[Path], float], output: Path, workdir: Path | None = None
) -> SoupRecord:
    """Greedy soup into `output`: `metric(folder)` is the dev score of a model folder (higher is better)."""
    folders = [Path(f) for f in folders]
    check_compatible(folders)  # fail before any evaluation
    scores = [metric(f) for f in folders]
    for f, s in zip(folders, scores, strict=True):
        log.info("ingredient %s: dev %.4f", f, s)
    order = sorted(range(len(folders)), key=lambda i: -scores[i])  # stable: equal scores keep the given order
    rows = [{"path": str(f), "dev": s, "kept": False, "soup_dev": None} for f, s in zip(folders, scores, strict=True)]
    kept, best = [order[0]], scores[order[0]]
    rows[order[0]].update(kept=True, soup_dev=best)
    scratch = Path(tempfile.mkdtemp(prefix=".greedy.", dir=workdir or Path(output).parent))
    try:
        for i in order[1:]:
            candidate = average([folders[j] for j in [*kept, i]], scratch / "candidate")
            score = metric(candidate)
            rows[i]["soup_dev"] = score
            log.info(
                "soup of %d + %s: dev %.4f (best %.4f) -> %s",
                len(kept),
                folders[i],
                score,
                best,
                "keep" if score >= best else "drop",
            )
            if score >= best:
                kept.append(i)
                rows[i]["kept"] = True
                best = score
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    average([folders[j] for j in kept], output)
    return SoupRecord("greedy", rows, best)


def uniform(folders: Sequence[Path], output: Path, metric: Callable[[Path], float] | None = None) -> SoupRecord:
    """Uniform soup into `output`; with `metric`, the ingredients' and the soup's dev scores are recorded too."""
    folders = [Path(f) for f in folders]
    average(folders, output)
    rows = [{"path": str(f), "dev": metric(f) if metric else None, "kept": True, "soup_dev": None} for f in folders]
    return SoupRecord("uniform", rows, metric(Path(output)) if metric else None)
