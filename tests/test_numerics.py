"""A non-finite loss stops the run naming the step and the component, or skips the step; fp16 overflow is skipped by
the GradScaler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision
from tiny import QUIET, TEXTS, text_examples, tiny_encoder, unit_rows

from embedlab.data.collate import Collator
from embedlab.errors import ConfigError
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.numerics import NonFiniteGuard, NonFiniteLossError
from embedlab.lit.optim import OptimConfig
from embedlab.lit.teacher import TeacherTable
from embedlab.losses import Embeddings, LossOutput, build_loss

POISONED = 5  # the training text whose teacher vector is NaN


def poisoned_module(tok, nonfinite: str) -> EmbeddingModule:
    """LEAF (at two Matryoshka sizes) against random unit targets, one of them NaN: a bad row in a teacher file."""
    targets = unit_rows(len(TEXTS), 16, seed=1)
    targets[POISONED, 3] = np.nan
    loss = build_loss({"leaf": {"matryoshka_dims": [8, 16]}})
    optim = OptimConfig(lr=1e-3, warmup_ratio=0.0, schedule="constant")
    table = TeacherTable(targets, "poisoned")
    return EmbeddingModule(tiny_encoder(tok), loss, optim, teacher_table=table, nonfinite=nonfinite)


def datamodule(tok) -> EmbeddingDataModule:
    return EmbeddingDataModule({"t": text_examples()}, Collator(tok, 32), batch_size=4, seed=0)


def first_poisoned_batch(tok) -> int:
    dm = datamodule(tok)
    dm.setup("fit")
    return next(i for i, b in enumerate(dm.train_dataloader()) if POISONED in b["index"].tolist())


def test_the_guard_names_the_component_and_the_inputs() -> None:
    emb = Embeddings(query=torch.ones(2, 4), positive=torch.tensor([[1.0, math.inf, 0, 0], [0, 1, 0, 0]]))
    out = LossOutput(torch.tensor(math.nan), {"infonce": math.nan, "infonce/accuracy": 0.5, "kl_distill": 0.2})
    with pytest.raises(NonFiniteLossError, match=r"step 7 \(batch 3 of the epoch\): the loss is nan") as err:
        NonFiniteGuard("stop").check(out, emb, step=7, batch=3)
    assert "non-finite components: infonce;" in str(err.value) and "already non-finite: positive" in str(err.value)
    guard = NonFiniteGuard("skip")
    assert guard.check(LossOutput(torch.tensor(0.3), {"infonce": 0.3}), emb, step=0, batch=0)
    assert not guard.check(out, emb, step=8, batch=4) and guard.skipped == 1
    with pytest.raises(ConfigError, match="nonfinite must be one of stop, skip, got 'ignore'"):
        NonFiniteGuard("ignore")


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_nan_loss_stops_the_run_at_its_step(tok, precision: str) -> None:
    module = poisoned_module(tok, "stop")
    trainer = pl.Trainer(max_epochs=1, logger=False, precision=precision, **QUIET)
    step = first_poisoned_batch(tok)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(module, datamodule=datamodule(tok))
    message = str(err.value)
    assert message.startswith(f"step {step} (batch {step} of the epoch): the loss is nan")
    assert "non-finite components: leaf, leaf/dim_8, leaf/dim_16" in message  # the whole leaf term, both sizes
    assert "already non-finite: teacher" in message  # the cause: a NaN target, not the student
    assert all(torch.isfinite(p).all() for p in module.student.parameters())  # no NaN step was ever applied


def test_skip_drops_only_the_bad_steps_and_training_goes_on(tok) -> None:
    module = poisoned_module(tok, "skip")
    weight = module.student.projection.weight
    moved = []  # (batch holds the poisoned text, weights changed by that batch)

    def start(trainer, pl_module, batch, batch_idx):
        moved.append((POISONED in batch["index"].tolist(), weight.detach().clone()))

    def end(trainer, pl_module, outputs, batch, batch_idx):
        moved[-1] = (moved[-1][0], not torch.equal(moved[-1][1], weight))

    probe = pl.callbacks.LambdaCallback(on_train_batch_start=start, on_train_batch_end=end)
    trainer = pl.Trainer(max_epochs=2, logger=False, callbacks=[probe], **QUIET)
    trainer.fit(module, datamodule=datamodule(tok))
    assert module.nonfinite.skipped == 2  # the poisoned text's batch, once per epoch
    assert sorted(moved) == [(False, True)] * 6 + [(True, False)] * 2  # only the skipped batches leave weights alone
    assert trainer.global_step == 8  # Lightning still counts a skipped batch's (empty) optimizer step
    assert all(torch.isfinite(p).all() for p in module.student.parameters())


def test_fp16_gradient_overflow_is_skipped_by_the_grad_scaler(tok) -> None:
    """fp16 autocast with Lightning's GradScaler (the `16-mixed` path of a GPU, here on CPU): an infinite gradient
    skips that optimizer step and halves the loss scale; the next step trains as usual."""
    table = TeacherTable(unit_rows(len(TEXTS), 16, seed=1), "random")
    module = EmbeddingModule(tiny_encoder(tok), build_loss({"leaf": {}}), teacher_table=table)
    weight = module.student.projection.weight
    calls = []
    weight.register_hook(lambda g: torch.full_like(g, math.inf) if not calls.append(1) and len(calls) == 1 else g)
    seen = []
    probe = pl.callbacks.LambdaCallback(
        on_train_batch_end=lambda tr, *a: seen.append((weight.detach().clone(), tr.precision_plugin.scaler.get_scale()))
    )
    before = weight.detach().clone()
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))
    pl.Trainer(max_steps=2, logger=False, plugins=[plugin], callbacks=[probe], **QUIET).fit(
        module, datamodule=datamodule(tok)
    )
    (after_overflow, scale_1), (after_next, scale_2) = seen
    assert torch.equal(after_overflow, before) and not torch.equal(after_next, before)
    assert scale_1 == scale_2 == 2.0**15  # 2**16 halved once, by the overflow
    assert torch.isfinite(after_next).all()


def test_the_guard_checks_gradients_too() -> None:
    good, bad = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    good.grad, bad.grad = torch.ones(2), torch.tensor([1.0, math.nan, 2.0])
    with pytest.raises(NonFiniteLossError, match=r"step 4: the loss is finite but the gradient of head.weight is no"):
        NonFiniteGuard("stop").check_gradients([("body.weight", good), ("head.weight", bad)], step=4)
    guard = NonFiniteGuard("skip")
    assert guard.check_gradients([("body.weight", good)], step=3) and good.grad is not None
    assert not guard.check_gradients([("body.weight", good), ("head.weight", bad)], step=4)
    assert guard.skipped == 1 and good.grad is None and bad.grad is None  # dropped: the optimizer moves neither


def inf_gradient_at_first_step(module: EmbeddingModule) -> torch.Tensor:
    """A finite loss whose first backward pass leaves an infinite gradient on the projection's weight."""
    weight = module.student.projection.weight
    calls = []
    weight.register_hook(lambda g: torch.full_like(g, math.inf) if not calls.append(1) and len(calls) == 1 else g)
    return weight


def test_a_nonfinite_gradient_with_a_finite_loss_stops_the_run(tok) -> None:
    table = TeacherTable(unit_rows(len(TEXTS), 16, seed=1), "random")
    module = EmbeddingModule(tiny_encoder(tok), build_loss({"leaf": {}}), teacher_table=table, nonfinite="stop")
    weight = inf_gradient_at_first_step(module)
    before = weight.detach().clone()
    with pytest.raises(NonFiniteLossError, match=r"^step 0: the loss is finite but the gradient of student\.proj"):
        pl.Trainer(max_steps=2, logger=False, **QUIET).fit(module, datamodule=datamodule(tok))
    assert torch.equal(weight.detach(), before)


def test_a_nonfinite_gradient_with_a_finite_loss_is_skipped(tok) -> None:
    table = TeacherTable(unit_rows(len(TEXTS), 16, seed=1), "random")
    module = EmbeddingModule(tiny_encoder(tok), build_loss({"leaf": {}}), teacher_table=table, nonfinite="skip")
    weight = inf_gradient_at_first_step(module)
    seen = []
    probe = pl.callbacks.LambdaCallback(on_train_batch_end=lambda *a: seen.append(weight.detach().clone()))
    before = weight.detach().clone()
    trainer = pl.Trainer(max_steps=2, logger=False, callbacks=[probe], **QUIET)
    trainer.fit(module, datamodule=datamodule(tok))
    assert module.nonfinite.skipped == 1
    assert torch.equal(seen[0], before) and not torch.equal(seen[1], before)  # only the bad step is dropped
    assert all(torch.isfinite(p).all() for p in module.student.parameters())
