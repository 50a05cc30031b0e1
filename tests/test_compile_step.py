"""`step.compile`: the student's backbone compiled by torch.compile (inductor) trains like the eager one — the same
loss and gradients within float32 rounding, over batches of different lengths — and keeps its parameter names, so
checkpoints, resume and exports are unchanged. Speed is measured by bench/compile_step.py, not here."""

from __future__ import annotations

import pytest
import torch
from test_gradcache import batch_of, pairs, step
from tiny import tiny_encoder

from embedlab.lit.module import EmbeddingModule
from embedlab.losses import build_loss

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # bare steps, no Trainer


def module(tok, compile: bool) -> EmbeddingModule:
    return EmbeddingModule(tiny_encoder(tok, seed=0), build_loss({"infonce": {"temperature": 0.05}}), compile=compile)


def test_a_compiled_step_equals_the_eager_step_and_keeps_parameter_names(tok) -> None:
    eager, compiled = module(tok, False), module(tok, True)
    assert compiled.student.backbone._compiled_call_impl is not None  # really compiled, in place
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefix: checkpoints load
    for batch in (batch_of(tok, pairs(6, k=1)), batch_of(tok, pairs(3))):  # two lengths: one dynamic graph
        loss_e, grads_e = step(eager, batch)
        loss_c, grads_c = step(compiled, batch)
        assert loss_c == pytest.approx(loss_e, abs=1e-5)
        assert grads_c.keys() == grads_e.keys() and len(grads_e) > 10
        for name, grad in grads_e.items():
            torch.testing.assert_close(grads_c[name], grad, atol=1e-5, rtol=1e-4, msg=name)
