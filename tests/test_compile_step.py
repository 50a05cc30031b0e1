"""`step.compile`: the student's backbone compiled by torch.compile (inductor) trains like the eager one — the same
loss and gradients within float32 rounding, over batches of different lengths — and keeps its parameter names, so
checkpoints, resume and exports are unchanged; inductor's caches keep each CPU ISA's entries apart (compiled.py).
Speed is measured by bench/compile_step.py, not here."""

from __future__ import annotations

import pytest
import torch
from test_gradcache import batch_of, pairs, step
from tiny import tiny_encoder
from torch import nn
from torch._dynamo.utils import counters
from torch._inductor.utils import fresh_cache

from embedlab.lit.compiled import compile_backbone
from embedlab.lit.module import EmbeddingModule
from embedlab.losses import build_loss

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # bare steps, no Trainer


def module(tok, compile: bool) -> EmbeddingModule:
    return EmbeddingModule(tiny_encoder(tok, seed=0), build_loss({"infonce": {"temperature": 0.05}}), compile=compile)


def test_a_compiled_step_equals_the_eager_step_and_keeps_parameter_names(tok) -> None:
    eager, compiled = module(tok, False), module(tok, True)
    assert compiled.student.backbone._compiled_call_impl is not None  # compiled in place
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefix: checkpoints load
    graphs = counters["stats"]["unique_graphs"]
    for batch in (batch_of(tok, pairs(6, k=1)), batch_of(tok, pairs(3))):  # two lengths: one dynamic graph
        loss_e, grads_e = step(eager, batch)
        loss_c, grads_c = step(compiled, batch)
        assert loss_c == pytest.approx(loss_e, abs=1e-5)
        assert grads_c.keys() == grads_e.keys() and len(grads_e) > 10
        for name, grad in grads_e.items():
            torch.testing.assert_close(grads_c[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert counters["stats"]["unique_graphs"] > graphs  # the steps ran through inductor, not a silent eager fallback


class Net(nn.Module):
    """Small, with vectorised C++ kernels (GELU, LayerNorm); user code, which dynamo traces (torch.nn's own is
    skipped)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear, self.norm = nn.Linear(24, 40), nn.LayerNorm(40)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(nn.functional.gelu(self.linear(x)))


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512", reason="needs a native AVX512 CPU")
def test_an_entry_compiled_for_one_isa_is_not_served_to_another(monkeypatch, tmp_path) -> None:
    """The NaN embeddings once seen under AVX2 emulation: inductor served a graph compiled natively (AVX512) from its
    on-disk cache to an ATEN_CPU_CAPABILITY=avx2 process, whose rebuilt kernels left half of each output unwritten
    (without the ISA in the cache key the second output here is off by ~2). One process plays both: the second sees
    what an AVX2-capped process sees (the variable inductor reads, the capability ATen reports)."""
    x = torch.randn(5, 24)
    with torch.no_grad():
        eager = Net()(x)
    with fresh_cache(dir=str(tmp_path)), torch.compiler.config.patch(cache_key_tag=""):
        for capability in ("avx512", "avx2"):
            monkeypatch.setenv("ATEN_CPU_CAPABILITY", capability)
            monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c.upper())
            torch.compiler.config.cache_key_tag = ""  # as a fresh process starts
            torch._dynamo.reset()
            misses = counters["inductor"]["fxgraph_cache_miss"]
            net = Net()
            compile_backbone(net)
            with torch.no_grad():
                torch.testing.assert_close(net(x), eager, atol=1e-5, rtol=1e-5, msg=capability)
            assert counters["inductor"]["fxgraph_cache_miss"] == misses + 1  # compiled for this ISA, not served
    torch._dynamo.reset()


def test_the_isa_tag_joins_a_user_tag_once(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with torch.compiler.config.patch(cache_key_tag="mine"):
        for _ in range(2):
            compile_backbone(Net())
        assert torch.compiler.config.cache_key_tag == "mine cpu_capability=AVX2"
