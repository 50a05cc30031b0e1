"""Resumable checkpoints: written atomically, every N optimizer steps and on SIGTERM, with what Lightning leaves out.

Lightning's checkpoint holds the weights, optimizer, scheduler, loop counters and (through `ResumableDataLoader`)
the batch sampler's position. `ResumeCheckpoint` adds the random states (dropout draws the torch generator) and the
run's resolved config, so a resume can refuse a changed recipe. Everything in it is plain tensors, numbers and
strings: it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.types import _Stateful
from pytorch_lightning.callbacks import ModelCheckpoint

from embedlab.io import atomic_path

log = logging.getLogger(__name__)

KEY = "embedlab"  # the checkpoint entry written by ResumeCheckpoint: {"config": yaml, "rng": states}
PATTERN = "step_*.ckpt"  # ResumeCheckpoint's file names


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning writes the file through an fsspec transaction whose temporary file is in the system temp folder;
    when that is another file system the final move is a copy into place, which a kill can leave half done. Here
    the temporary file is a sibling, renamed onto the target only once complete and flushed to disk (so not even
    a machine crash right after the rename can leave an empty file under the final name)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


def rng_state() -> dict:
    """Python, numpy and torch (CPU and CUDA) generator states, as types `weights_only` loading accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeCheckpoint(ModelCheckpoint):
    """Keeps the last `keep` checkpoints, `<dirpath>/step_<global step>.ckpt` (and the one a run resumed from, which
    Lightning never deletes), saved every `every_n_steps` optimizer steps (0: never on a schedule) and when the
    process receives SIGTERM: Lightning only sets a flag on SIGTERM and stops after the batch; this saves that
    batch's state first, the same way as a scheduled save. Lightning runs checkpoint callbacks after all others, so
    the saved state includes what other callbacks did at that step."""

    def __init__(self, dirpath: str | Path, every_n_steps: int, keep: int = 2, config: str = "") -> None:
        super().__init__(
            dirpath=dirpath,
            filename="step_{step}",
            auto_insert_metric_name=False,
            monitor="step",  # the newest are the best: top-k by step keeps the last k
            mode="max",
            save_top_k=keep,
            every_n_train_steps=every_n_steps,
            every_n_epochs=0,
            save_on_train_epoch_end=False,
            enable_version_counter=False,  # a step saved again after a resume replaces its file, no `-v1` copies
        )
        self.config = config
        self._restore: dict = {}  # generator states and loader position, applied once training starts
        self._step_before = 0  # the global step when the current batch began

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        loader = trainer.train_dataloader
        position = loader.state_dict() if isinstance(loader, _Stateful) else None
        checkpoint[KEY] = {"config": self.config, "rng": rng_state(), "loader": position}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._restore = dict(checkpoint.get(KEY, {}))

    def on_train_start(self, trainer, pl_module) -> None:
        """Applied here, the last moment before the next step. The loader position: Lightning restores it only when
        it builds the loader after loading the checkpoint, but `estimated_stepping_batches` (the LR schedule's
        length) has built it before; the batch sampler starts its pass lazily, so setting it now is in time. The
        random states: an uninterrupted run went straight from the checkpointed step to the next one."""
        if self._restore.get("loader") is not None:
            trainer.train_dataloader.load_state_dict(self._restore["loader"])
        if self._restore.get("rng") is not None:
            set_rng_state(self._restore["rng"])
        self._restore = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not trainer.received_sigterm or self._should_skip_saving_checkpoint(trainer):
            return
        if trainer.global_step == self._step_before:
            # Inside a gradient-accumulation window: accumulated gradients are not checkpointed, so this state could
            # not be resumed exactly; the last checkpoint remains the one to resume from.
            log.warning("SIGTERM inside a gradient-accumulation window: no checkpoint; resume from the last one")
            return
        self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
        log.warning("SIGTERM: saved %s; training stops after this step", self.best_model_path)
