"""AdamW with parameter groups and a warmup + decay schedule, on the torch kernel `implementation` names."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision
from torch.optim.optimizer import _device_dtype_check_for_fused  # private: torch's one place for fused's limits

from embedlab.errors import ConfigError

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
HEADS = ("projection.", "classifier.")  # freshly initialised heads: they get `projection_lr`
SCHEDULES = ("linear", "cosine", "constant")
# torch.optim.AdamW's flags per implementation; auto tries fused first (bench/optimizer_step.py: 6x foreach on CPU)
KERNELS = {
    "fused": {"fused": True, "foreach": None},
    "foreach": {"fused": None, "foreach": True},
    "for_loop": {"fused": None, "foreach": False},
}
IMPLEMENTATIONS = ("auto", *KERNELS)

log = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    lr: float = 2e-5  # backbone learning rate
    projection_lr: float | None = 1e-3  # learning rate of a projection head; None = lr
    weight_decay: float = 0.01  # AdamW decay; never on biases and norm weights
    warmup_ratio: float = 0.1  # share of the steps with a linear warmup from 0
    schedule: str = "linear"  # linear | cosine | constant (after warmup)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's decay rates of the gradient's moments
    eps: float = 1e-8  # AdamW's guard against division by zero
    implementation: str = "auto"  # auto | fused | foreach | for_loop: AdamW's torch kernel; auto = fused if torch can

    def __post_init__(self) -> None:  # checked once, when built: every user of an OptimConfig gets a valid one
        if self.lr <= 0 or (self.projection_lr is not None and self.projection_lr <= 0):
            raise ConfigError(f"learning rates must be > 0, got lr={self.lr}, projection_lr={self.projection_lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule '{self.schedule}'; choose from {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.implementation not in IMPLEMENTATIONS:
            raise ConfigError(
                f"unknown optim.implementation '{self.implementation}'; choose from {', '.join(IMPLEMENTATIONS)}"
            )


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


def adamw(groups: list[dict], cfg: OptimConfig, amp_clipping: bool = False) -> torch.optim.AdamW:
    """torch's AdamW on the kernel `cfg.implementation` names. `auto` is fused unless Lightning would refuse it
    (`amp_clipping`, see `refuses_fused`) or torch refuses it (a device or dtype with no fused kernel); then torch's
    default kernel (foreach)."""
    refusal = fused_refusal([p for group in groups for p in group["params"]])
    if cfg.implementation == "fused" and refusal:
        raise ConfigError(f"optim.implementation=fused: torch refuses it here ({refusal})")
    if cfg.implementation == "fused" and amp_clipping:
        raise ConfigError(
            "optim.implementation=fused: Lightning does not clip gradients of a fused optimizer under mixed "
            "precision; use optim.implementation=auto or foreach, or trainer.gradient_clip_val=0"
        )
    if cfg.implementation != "auto":
        kernel = KERNELS[cfg.implementation]
    elif amp_clipping or refusal:
        if refusal:
            log.warning("optim.implementation=auto: no fused AdamW here (%s); using torch's default kernel", refusal)
        kernel = {}
    else:
        kernel = KERNELS["fused"]
    optimizer = torch.optim.AdamW(groups, betas=tuple(cfg.betas), eps=cfg.eps, **kernel)
    flags = {key: optimizer.defaults[key] for key in ("fused", "foreach")}

    def keep_kernel(loaded: torch.optim.Optimizer) -> None:  # a state dict's groups bring their saved kernel flags
        for group in loaded.param_groups:
            group.update(flags)

    optimizer.register_load_state_dict_post_hook(keep_kernel)
    return optimizer


def fused_refusal(params: list[torch.Tensor]) -> str | None:
    """Why torch's fused AdamW would refuse these parameters, or None: torch's own check, which it runs only at the
    first step, run here before choosing the kernel."""
    try:
        for p in params:
            _device_dtype_check_for_fused(p)
    except RuntimeError as err:
        return str(err)
    return None


def refuses_fused(trainer: pl.Trainer) -> bool:
    """Whether Lightning would refuse fused AdamW in this trainer: its mixed-precision plugin (16-mixed and bf16-mixed
    alike, GradScaler or not) will not clip the gradients of an optimizer that unscales them inside its step."""
    return isinstance(trainer.precision_plugin, MixedPrecision) and bool(trainer.gradient_clip_val)


def configure_adamw(model: torch.nn.Module, cfg: OptimConfig, trainer: pl.Trainer) -> dict:
    """AdamW over `parameter_groups` with the warmup + decay schedule stepped per optimizer step (Lightning's
    `configure_optimizers` return value for `trainer`)."""
    optimizer = adamw(parameter_groups(model, cfg), cfg, refuses_fused(trainer))
    total_steps = int(trainer.estimated_stepping_batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(max(1, total_steps), cfg))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
