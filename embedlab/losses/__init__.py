"""The loss zoo. Losses are pure functions of an `Embeddings` record; `build_loss` composes them from config.

Config shape (the `loss` group; several may be selected, `loss=[infonce,kl_distill]`; each entry's knobs and their
defaults are its loss's `settings`, losses/settings.py):

    loss:
      infonce: {weight: 1.0, temperature: 0.05, ..., matryoshka_dims: null}
      kl_distill: {weight: 0.5, student_temperature: 0.05, teacher_temperature: 1.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from embedlab.errors import ConfigError
from embedlab.losses.base import Embeddings, Loss, LossOutput
from embedlab.losses.combine import WeightedSum
from embedlab.losses.hn_mixing import HardNegativeMixing
from embedlab.losses.infonce import InfoNCE
from embedlab.losses.kl_distill import KLDistill
from embedlab.losses.leaf import Leaf
from embedlab.losses.margin_mse import MarginMSE
from embedlab.losses.matryoshka import Matryoshka
from embedlab.losses.settings import LossSettings

LOSSES: dict[str, type[Loss]] = {
    "leaf": Leaf,
    "infonce": InfoNCE,
    "focal_infonce": InfoNCE,  # the same loss with gamma > 0 (its YAML sets gamma: 1.0)
    "kl_distill": KLDistill,
    "margin_mse": MarginMSE,
}


def loss_settings(name: str, given: Mapping[str, Any] | LossSettings) -> LossSettings:
    """A loss entry as its typed settings: a composed entry, or a plain mapping checked against the same schema (an
    unknown key or a wrong type fails naming it); absent knobs take the schema's defaults."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; known losses: {', '.join(sorted(LOSSES))}")
    if isinstance(given, LossSettings):
        return given
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LOSSES[name].settings), dict(given)))
    except OmegaConfBaseException as e:
        key = f"loss.{name}.{e.full_key}" if getattr(e, "full_key", None) else f"loss.{name}"
        raise ConfigError(f"{key}: {str(e).splitlines()[0]}") from None


def build_one(name: str, given: Mapping[str, Any] | LossSettings) -> tuple[float, Loss]:
    settings = loss_settings(name, given)
    arguments = settings.arguments()
    mixing = arguments.pop("hn_mixing", None)  # infonce only: its schema is the only one with the key
    if mixing is not None and mixing.enabled:
        arguments["mixing"] = HardNegativeMixing(
            mixing.num, mixing.top_k, mixing.kinds, query_cap_margin=mixing.query_cap_margin
        )
    try:
        loss = LOSSES[name](**arguments)
    except ConfigError as e:  # an impossible value (a temperature ≤ 0): say which loss's key it is
        raise ConfigError(f"loss.{name}: {e}") from None
    if settings.matryoshka_dims:
        loss = Matryoshka(loss, list(settings.matryoshka_dims), settings.matryoshka_weights or None)
    return settings.weight, loss


def build_loss(config: Mapping[str, Mapping[str, Any] | LossSettings]) -> WeightedSum:
    """`{name: settings}` → a weighted sum; fails before any work on unknown names or impossible values."""
    if not config:
        raise ConfigError(f"no loss configured; choose from {', '.join(sorted(LOSSES))} (e.g. loss=infonce)")
    return WeightedSum({name: build_one(name, settings or {}) for name, settings in config.items()})


__all__ = [
    "LOSSES",
    "Embeddings",
    "HardNegativeMixing",
    "InfoNCE",
    "KLDistill",
    "Leaf",
    "Loss",
    "LossOutput",
    "LossSettings",
    "MarginMSE",
    "Matryoshka",
    "WeightedSum",
    "build_loss",
    "loss_settings",
]
