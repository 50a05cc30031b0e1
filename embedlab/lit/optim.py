"""AdamW with parameter groups and a warmup + decay schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from embedlab.errors import ConfigError

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
HEADS = ("projection.", "classifier.")  # freshly initialised heads: they get `projection_lr`
SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class OptimConfig:
    lr: float = 2e-5  # backbone learning rate
    projection_lr: float | None = 1e-3  # learning rate of a projection head; None = lr
    weight_decay: float = 0.01  # AdamW decay; never on biases and norm weights
    warmup_ratio: float = 0.1  # share of the steps with a linear warmup from 0
    schedule: str = "linear"  # linear | cosine | constant (after warmup)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's decay rates of the gradient's moments
    eps: float = 1e-8  # AdamW's guard against division by zero

    def __post_init__(self) -> None:  # checked once, when built: every user of an OptimConfig gets a valid one
        if self.lr <= 0 or (self.projection_lr is not None and self.projection_lr <= 0):
            raise ConfigError(f"learning rates must be > 0, got lr={self.lr}, projection_lr={self.projection_lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule '{self.schedule}'; choose from {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def parameter_groups(model: torch.nn.Module, cfg: OptimConfig) -> list[dict]:
    """Four groups at most: {backbone, projection} × {decay, no decay}; frozen parameters are left out."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = any(name.startswith(h) or f".{h}" in name for h in HEADS)
        decay = param.ndim > 1 and not any(name.endswith(n) for n in NO_DECAY)
        groups.setdefault((is_head, decay), []).append(param)
    return [
        {
            "params": params,
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr": (cfg.projection_lr or cfg.lr) if head else cfg.lr,
            "name": f"{'head' if head else 'backbone'}{'' if decay else '_no_decay'}",
        }
        for (head, decay), params in sorted(groups.items())
    ]


def lr_lambda(total_steps: int, cfg: OptimConfig):
    warmup = int(cfg.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 1.0 - progress if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def configure_adamw(model: torch.nn.Module, cfg: OptimConfig, total_steps: int) -> dict:
    """AdamW over `parameter_groups` with the warmup + decay schedule stepped per optimizer step (Lightning's
    `configure_optimizers` return value)."""
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), betas=tuple(cfg.betas), eps=cfg.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(max(1, total_steps), cfg))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
