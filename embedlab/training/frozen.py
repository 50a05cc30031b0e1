"""The frozen encoders' passes of a training run, at the start of fit: the cached teacher table and the closed-form
projection (`prepare.frozen_targets`), the frozen systems' evaluations (`Systems.before_training`) and the held-out
cosines before training.

They run in a callback's `setup`, on every rank, once Lightning's strategy has initialised the process group (its
subprocess launcher or torchrun alike) and before it wraps, moves or shards the model. In a group of several ranks
each rank encodes its shards of every collection (`embedlab.eval.cache.cache_for_ranks`) and rank 0 searches and
writes; one process runs them as it did before fit, through the run's own cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from embedlab.eval.cache import EmbeddingCache, cache_for_ranks
from embedlab.training.prepare import Prepared, frozen_targets
from embedlab.training.systems import Systems, heldout_cosines


class FrozenPasses(pl.Callback):
    def __init__(
        self, cfg: DictConfig, run: Prepared, systems: Systems, cache: EmbeddingCache | None, scratch: Path
    ) -> None:
        self.cfg, self.run, self.systems, self.cache, self.scratch = cfg, run, systems, cache, scratch
        self.cosines_before: np.ndarray | None = None  # per held-out text, before the first step
        self.done = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.done:  # once per run
            return
        cache = cache_for_ranks(self.cache, self.scratch, self.cfg.eval.shard_rows)
        frozen_targets(self.cfg, self.run, cache)
        self.systems.before_training(self.run, cache)
        self.cosines_before = heldout_cosines(self.run, self.cfg.eval.batch_size)
        self.done = True
