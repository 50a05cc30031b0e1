"""Objects from config nodes, written once for every job: encoders (`model`, `teacher`, `mining_model`), evaluation
settings, list-valued overrides, and composing a job's config the way its command line would."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from embedlab.config import schema  # noqa: F401  (registers the typed schemas before any compose)
from embedlab.errors import ConfigError
from embedlab.eval.ann import SearchSettings, settings_from
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.runner import EvalSettings, check_settings
from embedlab.hub import resolve_model
from embedlab.models import Encoder, EncoderConfig
from embedlab.scoring.scorers import BiEncoderScorer, CrossEncoderScorer

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
LIST_SETTINGS = ("k_values", "dims", "precisions")  # EvalSettings fields a command line may give as one value


def as_list(value) -> list:
    """A list override as a list; a single value (tasks=scifact, eval.dims=128) as a one-item list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def compose(job: str, overrides: list[str]) -> DictConfig:
    """A job's config (conf/<job>.yaml) with Hydra overrides, as `embedlab-<job> overrides...` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=job, overrides=overrides)


def encoder_config(node: DictConfig | dict | str) -> EncoderConfig:
    """A model config node, or a string: the name of a `conf/model/*.yaml` entry, a folder or a hub id."""
    if isinstance(node, str):
        preset = CONF_DIR / "model" / f"{node}.yaml"
        node = OmegaConf.load(preset) if preset.exists() else {"path": node}
        if isinstance(node, DictConfig):  # its `defaults: [schema, _self_]` is EncoderConfig's own defaults
            node.pop("defaults", None)
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    known = set(EncoderConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
    if not values.get("path"):
        raise ConfigError("model.path is empty: name a model (model=minilm) or a folder (model.path=/path/to/model)")
    return EncoderConfig(**values)


def build_encoder(node: DictConfig | dict | str, device: str = "cpu", frozen: bool = False) -> Encoder:
    """`frozen`: no parameter trains (teachers, evaluated and mining models), so `backend` may run the backbone."""
    encoder = Encoder.from_config(encoder_config(node)).to(device)
    return encoder.requires_grad_(False) if frozen else encoder


def preset_with(model: DictConfig | dict | str, **settings) -> Encoder:
    """A frozen encoder from a model preset, folder or hub id, with some settings overridden (those given as None keep
    the preset's): teachers and scoring bi-encoders (max length, precision, backend)."""
    node = OmegaConf.merge(
        OmegaConf.structured(encoder_config(model).__dict__), {k: v for k, v in settings.items() if v is not None}
    )
    return build_encoder(node, frozen=True)


def build_scorer(t: dict, batch_size: int, cache: EmbeddingCache | None):
    """One soft-label teacher from its `teacher_scores.teachers` entry (a reranker runs remote code only if asked)."""
    if t["kind"] == "bi_encoder":
        encoder = preset_with(t["model"], max_length=t["max_length"], precision=t["precision"], backend=t["backend"])
        return BiEncoderScorer(encoder, batch_size=batch_size, cache=cache)
    return CrossEncoderScorer(
        resolve_model(encoder_config(t["model"]).path),
        max_length=t["max_length"] or 512,
        batch_size=batch_size,
        trust_remote_code=t["trust_remote_code"],
    )


def eval_settings(node: DictConfig) -> EvalSettings:
    """EvalSettings from an `eval` config node: the keys it sets, EvalSettings' defaults for the rest; checked (all
    but the dims' upper bound, which needs the model)."""
    given = {f.name: node[f.name] for f in fields(EvalSettings) if f.name in node}
    for name in LIST_SETTINGS:
        if name in given:
            given[name] = as_list(given[name])
    if "k_values" in given:
        given["k_values"] = tuple(given["k_values"])
    given["dims"] = given.get("dims") or [None]
    given["search"] = search_settings(given.get("search"))
    settings = EvalSettings(**given)
    check_settings(settings)
    return settings


def search_settings(node: DictConfig | dict | None) -> SearchSettings:
    """SearchSettings from a `search` config node (eval.search, embedlab-mine's search); absent = exact search."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    return settings_from(node)
