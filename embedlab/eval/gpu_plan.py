"""Where a faiss search runs: on every GPU faiss sees (the index sharded across them) or on the CPU.

`use_gpus` is a pure function of the method, the GPU count and k, so the choice is tested on CPU-only machines by
passing a count; `gpu_count` asks faiss and says 0 for a CPU-only build instead of failing.
"""

from __future__ import annotations

import functools

import faiss

GPU_MAX_K = 2048  # faiss' GPU flat and IVF indexes refuse larger k
GPU_METHODS = ("exact", "ivf_flat")  # flat and IVF-Flat shard across GPUs as they are; the others stay on the CPU


def gpu_count() -> int:
    """GPUs this faiss build can use: 0 for faiss-cpu (no GPU kernels) or a machine without one."""
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except (AttributeError, RuntimeError):
        return 0


def use_gpus(method: str, n_gpus: int, k: int, allowed: bool = True) -> bool:
    """True when the search should shard its index over the GPUs: some are there and allowed, the method has a
    GPU index, and k is within what a GPU index returns. `blocked` stays on the CPU on purpose: it exists to bound
    host memory, and its blocks stream from a memory-mapped store."""
    return allowed and n_gpus > 0 and method in GPU_METHODS and 0 < k <= GPU_MAX_K


@functools.cache
def _resources() -> list:  # one per GPU and process: each costs a CUDA context
    return [faiss.StandardGpuResources() for _ in range(gpu_count())]


def to_gpus(index: faiss.Index) -> faiss.Index:
    """The CPU `index` (empty or filled) copied to every GPU, its vectors sharded (each GPU holds 1/n of them)."""
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    # faiss' own helper (what index_cpu_to_all_gpus calls), with resources made once per process
    return faiss.index_cpu_to_gpu_multiple_py(_resources(), index, co=options)
