"""`step.compile`: the student's backbone compiled in place by torch.compile (inductor), its cache keyed by CPU ISA.

Inductor's on-disk caches (FX graph and AOT autograd; /tmp/torchinductor_$USER unless TORCHINDUCTOR_CACHE_DIR says
otherwise, shared by every process of a user) key a compiled graph without the CPU vector ISA its C++ kernels were
generated for, which `ATEN_CPU_CAPABILITY` picks (torch 2.13). An entry written natively on an AVX512 CPU (16-wide
loops) and served to a process under `ATEN_CPU_CAPABILITY=avx2` has its kernels rebuilt with AVX2 flags — 8-wide
vectors in 16-wide loops — so half of each output buffer is never written: uninitialised memory, NaN embeddings.
Putting the capability in torch.compile's cache-key tag gives each ISA its own entries.
"""

from __future__ import annotations

import torch
from torch import nn


def isa_cache_tag() -> str:
    """This process's CPU capability as a cache-key tag; `ATEN_CPU_CAPABILITY` moves ATen and inductor alike."""
    return f"cpu_capability={torch.backends.cpu.get_cpu_capability()}"


def compile_backbone(backbone: nn.Module) -> None:
    """Compile `backbone` in place (nn.Module.compile: parameters, state_dict keys, checkpoints and exports unchanged),
    one dynamic graph for every batch length, its cache entries apart from other ISAs' (module docstring)."""
    tag, tags = isa_cache_tag(), torch.compiler.config.cache_key_tag.split()
    if tag not in tags:  # appended: a tag the user set (TORCH_COMPILE_CACHE_KEY_TAG) still breaks caches too
        torch.compiler.config.cache_key_tag = " ".join([*tags, tag])
    backbone.compile(dynamic=True)
