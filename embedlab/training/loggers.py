"""The run's metric logger: W&B (offline by default; a multirun's jobs share a group and carry the knobs it
varies as tags) or CSV."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from embedlab.errors import ConfigError
from embedlab.training.labels import SweepLabels, current_labels


def make_logger(cfg: DictConfig, out_dir: Path, labels: SweepLabels | None = None):
    """`labels`: the Hydra multirun's group and varied knobs (default: those of the running job)."""
    if cfg.logger.kind == "csv":
        return pl.loggers.CSVLogger(out_dir, name="logs")
    if cfg.logger.kind == "wandb":
        labels = labels or current_labels()
        return pl.loggers.WandbLogger(
            project=cfg.logger.project,
            save_dir=str(out_dir),
            mode=cfg.logger.mode,
            group=cfg.logger.group or labels.group,
            tags=list(dict.fromkeys([*cfg.logger.tags, *labels.tags])),
            config={**OmegaConf.to_container(cfg, resolve=True), "sweep": labels.knobs},
        )
    raise ConfigError(f"logger.kind must be wandb or csv, got {cfg.logger.kind!r}")
