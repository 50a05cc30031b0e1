"""`python tests/kill_at_step.py STEP SIGNAL <embedlab-train overrides>`: embedlab-train that sends itself SIGNAL
(KILL or TERM) right after optimizer step STEP, before that step's checkpoint callback runs (Lightning runs
checkpoint callbacks last). Fault injection for the resume tests, kept out of the package."""

from __future__ import annotations

import os
import signal
import sys

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def main() -> None:
    step, name, *overrides = sys.argv[1:]
    killer = KillAtStep(int(step), getattr(signal, f"SIG{name}"))
    trainer_init = pl.Trainer.__init__

    def init(self, *args, callbacks=(), **kwargs) -> None:
        trainer_init(self, *args, callbacks=[*callbacks, killer], **kwargs)

    pl.Trainer.__init__ = init
    from embedlab.cli.train import main as train

    sys.argv = ["embedlab-train", *overrides]
    train()


if __name__ == "__main__":
    main()
