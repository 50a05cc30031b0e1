"""Reject a training configuration that cannot work before any data is read, model trained or teacher run.

Each problem is one `ConfigError` naming the configuration key and, where there is a choice, the valid values.
Embedding sizes are read from the model folders (projection, Dense layer or `hidden_size`) without loading any
weights, so Matryoshka dims and a teacher/student size mismatch are caught at once. What only a built model can
tell (LoRA target modules) is `check_lora_targets`, which `add_lora` runs before peft wraps the backbone.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from embedlab.config.build import CONF_DIR, encoder_config, eval_settings
from embedlab.data import get_task
from embedlab.data.arrow import BAD_ROWS
from embedlab.data.batch import KINDS
from embedlab.data.lines import read_jsonl
from embedlab.data.rows import BATCH_KINDS, FORMATS
from embedlab.data.rows import KINDS as MIXTURE_KINDS
from embedlab.errors import ConfigError, ModelNotFoundError
from embedlab.eval.runner import EvalSettings
from embedlab.hub import resolve_model
from embedlab.lit.optim import OptimConfig
from embedlab.lit.teacher import check_teacher_size
from embedlab.losses import WeightedSum, build_loss
from embedlab.models import st_format
from embedlab.models.runtime import BACKENDS
from embedlab.precision import ENCODER_PRECISIONS
from embedlab.scoring.combine import NORMALIZATIONS

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "32", "16", "bf16", "64")
CHOICES = {
    "data.kind": (*KINDS, "mixture"),
    "data.on_bad_row": BAD_ROWS,
    "logger.kind": ("wandb", "csv"),
    "projection.init": ("random", "ridge"),
    "nonfinite": ("stop", "skip"),
    "trainer.precision": PRECISIONS,  # auto, then Lightning's names (the last four are its older spellings)
    "model.precision": ENCODER_PRECISIONS,
    "teacher.precision": ENCODER_PRECISIONS,
    "model.backend": BACKENDS,
    "teacher.backend": BACKENDS,
}
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)


@dataclass(frozen=True)
class TrainChecks:
    """What checking built on the way, so the run does not build it again."""

    loss: WeightedSum
    optim: OptimConfig
    eval: EvalSettings


def check_train_config(cfg: DictConfig) -> TrainChecks:
    """Every check that needs no data and no weights, for `embedlab-train`'s resolved configuration."""
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:  # e.g. ${oc.env:VAR} with VAR unset
        raise ConfigError(f"{e.full_key}: {str(e).splitlines()[0]}") from None
    if missing:
        raise ConfigError(f"{missing[0]} is required (it has no value, '???'): set {missing[0]}=...")
    check_no_secrets(resolved)
    for key, valid in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and str(value) not in valid:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(valid)}")
    loss = build_loss(OmegaConf.to_container(cfg.loss, resolve=True))
    optim = OptimConfig(**OmegaConf.to_container(cfg.optim, resolve=True))
    for name in cfg.eval.tasks:
        get_task(name)
    settings = eval_settings(cfg.eval)
    check_loss_fits_data(cfg, loss)
    teacher = cfg.teacher
    cached_teacher = teacher.file or (teacher.path and teacher.cache)
    if cfg.projection.init == "ridge" and not cached_teacher:
        raise ConfigError("projection.init=ridge needs cached teacher embeddings (teacher=... with cache=true)")
    for key in ("mining_model", "teacher.path"):
        if OmegaConf.select(cfg, key, default=None):
            model_folder(OmegaConf.select(cfg, key), key)  # an unknown model name fails here, not after mining
    check_sizes(cfg, loss)
    return TrainChecks(loss, optim, settings)


def check_loss_fits_data(cfg: DictConfig, loss: WeightedSum) -> None:
    """Each loss term's inputs must be in the batches the configured data (and teacher) produce."""
    teacher = cfg.teacher
    if cfg.data.kind == "mixture":
        return check_mixture(cfg, loss)
    kind = "scored" if cfg.get("teacher_scores") and cfg.teacher_scores.get("teachers") else cfg.data.kind
    provided = KINDS[kind].provides | ({"teacher"} if teacher.get("path") or teacher.get("file") else set())
    for name, term in loss.terms.items():
        lacking = sorted(term.requires - provided)
        if lacking:
            fix = "configure teacher=... (or teacher.file=...)" if lacking == ["teacher"] else "change data or loss"
            raise ConfigError(f"loss.{name} needs {lacking}, which data.kind={kind} does not provide: {fix}")


def check_mixture(cfg: DictConfig, loss: WeightedSum) -> None:
    """data.mixture: known kinds and formats, unique names; every loss term fed by some entry and every entry
    feeding some term (the teacher's targets are for texts entries); what a mixture does not support yet."""
    entries, teacher = cfg.data.mixture, cfg.teacher
    if not entries:
        raise ConfigError("data.mixture is empty: list at least one dataset")
    names = [e.name for e in entries]
    if len(set(names)) < len(names):
        raise ConfigError(f"data.mixture names must be unique: {names}")
    for i, e in enumerate(entries):
        if e.kind not in MIXTURE_KINDS or e.format not in FORMATS:
            raise ConfigError(f"data.mixture.{i} ({e.name}): kind in {MIXTURE_KINDS}, format in {FORMATS}")
    unsupported = {"data.heldout": cfg.data.heldout != 0, "mining": bool(cfg.get("mining") and cfg.mining.enabled)}
    for key, bad in unsupported.items():
        if bad:
            raise ConfigError(f"{key}: not supported with data.kind=mixture (data.heldout=0, mining disabled)")
    if cfg.projection.init == "ridge" and not any(e.kind == "texts" for e in entries):
        raise ConfigError("projection.init=ridge on a mixture is fitted on its texts datasets: add a kind=texts entry")
    has_teacher = bool(teacher.get("path") or teacher.get("file"))
    provided = {
        e.name: KINDS[BATCH_KINDS[e.kind]].provides | ({"teacher"} if has_teacher and e.kind == "texts" else set())
        for e in entries
    }
    for name, term in loss.terms.items():
        if not any(term.requires <= p for p in provided.values()):
            raise ConfigError(f"loss.{name} needs {sorted(term.requires)}, which no data.mixture entry provides")
    for entry, p in provided.items():
        if not any(term.requires <= p for term in loss.terms.values()):
            raise ConfigError(f"data.mixture entry '{entry}' feeds no loss term ({list(loss.terms)}): add a loss")


def check_sizes(cfg: DictConfig, loss: WeightedSum) -> None:
    """Matryoshka dims within the student's size, and the teacher's size equal to it, from the files alone."""
    student = declared_dim(cfg.model, "model.path")
    if student is not None:
        loss.check_dim(student)
    teacher = f"the teacher ({cfg.teacher.get('path') or cfg.teacher.get('file')})"
    check_teacher_size(student, teacher_dim(cfg.teacher), teacher, f"the student ({cfg.model.path})")


def check_no_secrets(values: Any, env: dict[str, str] | None = None) -> None:
    """No configuration value may contain a secret from the environment (W&B key, hub token): the resolved config
    is written to config.yaml, the manifest and W&B. Secrets stay in the environment, where their tools read them."""
    env = os.environ if env is None else env
    secrets = {name: value for name, value in env.items() if SECRET_NAME.search(name) and len(value) >= 8}
    for key, value in _leaves(values):
        for name, secret in secrets.items():
            if secret in str(value):
                raise ConfigError(f"{key} holds the value of ${name}: leave secrets in the environment, not in config")


def _leaves(values: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(values, dict):
        for k, v in values.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(values, list):
        for i, v in enumerate(values):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, values


def model_folder(node: DictConfig | str, key: str) -> Path | None:
    """The local folder a model setting resolves to (None: a hub id transformers will download)."""
    try:
        resolved = Path(resolve_model(encoder_config(node).path))
    except ModelNotFoundError as e:
        presets = ", ".join(sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml")))
        raise ConfigError(f"{key}: {e}; or a conf/model preset: {presets}") from None
    return resolved if resolved.is_dir() else None


def declared_dim(node: DictConfig | str, key: str) -> int | None:
    """The embedding size a model config will produce, from its files alone (None when only loading can tell)."""
    projection = encoder_config(node).projection_dim
    if projection:
        return int(projection)
    folder = model_folder(node, key)
    if folder is None:
        return None
    layout = st_format.read_layout(folder)
    if layout.dense is not None:
        return int(layout.dense["weight"].shape[0])
    config = layout.transformer_dir / "config.json"
    hidden = json.loads(config.read_text()).get("hidden_size") if config.is_file() else None
    return hidden if isinstance(hidden, int) else None


def teacher_dim(teacher: DictConfig) -> int | None:
    """The teacher's embedding size: its model's, or the width of its embeddings file (read from the header only)."""
    if teacher.get("file"):
        path = Path(teacher.file)
        if not path.is_file():
            raise ConfigError(f"teacher.file: {path} not found")
        if path.suffix != ".npz":
            for _, rec in read_jsonl(path):
                vector = rec.get("embedding")
                return len(vector) if isinstance(vector, list) else None  # the reader reports a bad line later
            return None
        try:
            with zipfile.ZipFile(path) as z, z.open("embeddings.npy") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = read(f)[0]
        except (KeyError, OSError, ValueError, zipfile.BadZipFile):
            return None  # TeacherTable.from_file says precisely what is wrong
        return int(shape[1]) if len(shape) == 2 else None
    if teacher.get("path"):
        return declared_dim(teacher.path, "teacher.path")
    return None


SCORER_KINDS = ("bi_encoder", "cross_encoder")


def check_teachers(cfg: DictConfig) -> list[dict]:
    """The `teacher_scores` group: its normalisation and each teacher's kind and model."""
    teachers = OmegaConf.to_container(cfg.teacher_scores.teachers, resolve=True) or []
    if cfg.teacher_scores.normalize not in NORMALIZATIONS:
        raise ConfigError(f"teacher_scores.normalize must be one of {', '.join(NORMALIZATIONS)}")
    for i, t in enumerate(teachers):
        if t["kind"] not in SCORER_KINDS:
            raise ConfigError(
                f"teacher_scores.teachers.{i}.kind must be one of {', '.join(SCORER_KINDS)}, got {t['kind']!r}"
            )
        if t["model"] in ("", "???"):
            raise ConfigError(f"teacher_scores.teachers.{i}.model is required (a folder or hub id)")
    return teachers
