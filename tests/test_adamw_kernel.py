"""`optim.implementation`: which torch AdamW kernel runs (fused, foreach, for-loop), that they agree, that `auto`
picks fused where it may, and that a loaded optimizer state keeps this run's kernel."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from tiny import QUIET, leaf_module, text_examples, tiny_encoder

from embedlab.data.collate import Collator
from embedlab.errors import ConfigError
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.optim import OptimConfig, adamw, parameter_groups

FLAGS = {"fused": (True, None), "foreach": (None, True), "for_loop": (None, False)}  # defaults' (fused, foreach)


def stepped(tok, implementation: str, steps: int = 3) -> tuple[torch.optim.AdamW, list[torch.Tensor]]:
    """`steps` AdamW steps of a tiny encoder's groups (decay and no-decay, two learning rates) on fixed gradients."""
    encoder = tiny_encoder(tok)
    cfg = OptimConfig(lr=1e-2, projection_lr=1e-1, implementation=implementation)
    optimizer = adamw(parameter_groups(encoder, cfg), cfg)
    generator = torch.Generator().manual_seed(0)
    params = list(encoder.parameters())
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    return optimizer, [p.detach() for p in params]


def flags(optimizer: torch.optim.Optimizer) -> tuple:
    return optimizer.defaults["fused"], optimizer.defaults["foreach"]


def test_each_implementation_runs_its_kernel_and_they_agree(tok) -> None:
    start = [p.detach().clone() for p in tiny_encoder(tok).parameters()]
    results = {name: stepped(tok, name) for name in ("auto", *FLAGS)}
    assert {name: flags(opt) for name, (opt, _) in results.items()} == {"auto": FLAGS["fused"], **FLAGS}
    reference = results["for_loop"][1]
    assert max((a - b).abs().max().item() for a, b in zip(start, reference, strict=True)) > 1e-2  # steps moved it
    for name in ("fused", "foreach"):
        for a, b in zip(results[name][1], reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_a_loaded_state_keeps_this_runs_kernel(tok) -> None:
    """torch restores the saved groups' kernel flags with the state; the run's knob must win (resume from a
    checkpoint saved with another kernel, e.g. before the knob existed), and the state itself is the same."""
    saved, _ = stepped(tok, "for_loop")
    fused, _ = stepped(tok, "fused")
    assert {k: set(v) for k, v in saved.state_dict()["state"].items()} == {
        k: set(v) for k, v in fused.state_dict()["state"].items()
    }
    fused.load_state_dict(saved.state_dict())
    assert {(g["fused"], g["foreach"]) for g in fused.param_groups} == {FLAGS["fused"]}


def test_auto_avoids_fused_where_lightning_or_torch_refuses_it(tok) -> None:
    groups = parameter_groups(tiny_encoder(tok), OptimConfig())
    assert flags(adamw(groups, OptimConfig(), amp_clipping=True)) == (None, None)  # Lightning would not clip it
    with pytest.raises(ConfigError, match=r"optim\.implementation=fused: Lightning does not clip"):
        adamw(groups, OptimConfig(implementation="fused"), amp_clipping=True)
    complex_ = [{"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))]}]  # no fused kernel for it
    assert flags(adamw(complex_, OptimConfig())) == (None, None)
    with pytest.raises(ConfigError, match=r"optim\.implementation=fused: torch refuses"):
        adamw(complex_, OptimConfig(implementation="fused"))


@pytest.mark.parametrize(
    ("implementation", "precision", "expected"),
    [
        ("auto", "32-true", FLAGS["fused"]),
        ("for_loop", "32-true", FLAGS["for_loop"]),
        # bf16-mixed with clipping: Lightning's mixed-precision plugin raises on a fused optimizer at the first step,
        # so auto takes torch's default kernel (no flags set)
        ("auto", "bf16-mixed", (None, None)),
    ],
)
def test_the_module_hands_lightning_the_configured_kernel(tok, implementation: str, precision: str, expected: tuple):
    module = leaf_module(tok, OptimConfig(implementation=implementation))
    dm = EmbeddingDataModule(text_examples()[:8], Collator(tok, 32), batch_size=8, seed=0)
    trainer = pl.Trainer(max_steps=1, logger=False, precision=precision, gradient_clip_val=1.0, **QUIET)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 1 and flags(trainer.optimizers[0]) == expected
