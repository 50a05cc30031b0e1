"""The loss zoo. Losses are pure functions of an `Embeddings` record; `build_loss` composes them from config.

Config shape (the `loss` group; several may be selected, `loss=[infonce,kl_distill]`):

    loss:
      infonce: {weight: 1.0, temperature: 0.05, ..., matryoshka_dims: null}
      kl_distill: {weight: 0.5, student_temperature: 0.05, teacher_temperature: 1.0}
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from embedlab.errors import ConfigError
from embedlab.losses.base import Embeddings, Loss, LossOutput
from embedlab.losses.combine import WeightedSum
from embedlab.losses.hn_mixing import HardNegativeMixing
from embedlab.losses.infonce import InfoNCE
from embedlab.losses.kl_distill import KLDistill
from embedlab.losses.leaf import Leaf
from embedlab.losses.margin_mse import MarginMSE
from embedlab.losses.matryoshka import Matryoshka

LOSSES: dict[str, type[Loss]] = {
    "leaf": Leaf,
    "infonce": InfoNCE,
    "focal_infonce": InfoNCE,  # the same loss with gamma > 0 (its YAML sets gamma: 1.0)
    "kl_distill": KLDistill,
    "margin_mse": MarginMSE,
}
# Keys every loss entry may carry besides its own arguments.
COMMON_KEYS = {"weight", "matryoshka_dims", "matryoshka_weights", "hn_mixing"}


def build_one(name: str, settings: Mapping[str, Any]) -> tuple[float, Loss]:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; known losses: {', '.join(sorted(LOSSES))}")
    settings = dict(settings)
    weight = float(settings.pop("weight", 1.0))
    dims = settings.pop("matryoshka_dims", None)
    dim_weights = settings.pop("matryoshka_weights", None)
    mixing = settings.pop("hn_mixing", None)
    if mixing and mixing.get("enabled", False):
        if LOSSES[name] is not InfoNCE:
            raise ConfigError(f"loss.{name}.hn_mixing: hard-negative mixing applies to infonce losses only")
        try:
            settings["mixing"] = HardNegativeMixing(**{k: v for k, v in mixing.items() if k != "enabled"})
        except TypeError as e:  # a misspelt mixing key: name it, as for the loss's own keys below
            accepted = sorted(set(inspect.signature(HardNegativeMixing).parameters) - {"generator"} | {"enabled"})
            raise ConfigError(f"loss.{name}.hn_mixing: {e}; accepted keys: {', '.join(accepted)}") from None
    cls = LOSSES[name]
    try:
        loss = cls(**settings)
    except TypeError as e:  # an unknown or misspelt key: name it, and list what the loss accepts
        accepted = sorted(set(inspect.signature(cls).parameters) | COMMON_KEYS)
        raise ConfigError(f"loss.{name}: {e}; accepted keys: {', '.join(accepted)}") from None
    except ConfigError as e:  # an impossible value (a temperature ≤ 0): say which loss's key it is
        raise ConfigError(f"loss.{name}: {e}") from None
    if dims:
        loss = Matryoshka(loss, list(dims), list(dim_weights) if dim_weights else None)
    return weight, loss


def build_loss(config: Mapping[str, Mapping[str, Any]]) -> WeightedSum:
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
    "MarginMSE",
    "Matryoshka",
    "WeightedSum",
    "build_loss",
]
