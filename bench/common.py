"""The like-for-like rules every benchmark here follows (issue 17 item 6), in one place: what a run records about
itself (commit, CPU, torch's CPU capability, threads, versions), the order in which contenders take turns (rotating,
so each goes first equally often: A,B then B,A for two), and how repeats are summarised (median, with min and max);
and how far a pass runs from the CPU's fp32 peak (useful FLOPs / time over cores × clock × FLOP per cycle).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from embedlab.manifest import cpu_model, git_state


def header(*packages: str) -> str:
    """One line naming the code, the machine and the versions a timing depends on; every benchmark prints it first."""
    state = git_state()
    code = f"{(state['commit'] or 'unknown')[:10]}{' (uncommitted changes)' if state['dirty'] else ''}"
    versions = ", ".join(f"{p} {_version(p)}" for p in ("torch", *packages))
    return (
        f"commit {code}; CPU {cpu_model()}, torch capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} threads; {versions}"
    )


def turns(sides: Sequence[str], repeat: int) -> list[str]:
    """The order of one repeat: the list rotated by `repeat`, so over len(sides) repeats each side goes first once
    and load that changes within a repeat falls on every side alike."""
    start = repeat % len(sides)
    return [*sides[start:], *sides[:start]]


def run_rotating(sides: dict[str, Callable[[], float]], repeats: int, label: str = "") -> dict[str, list[float]]:
    """Call every side `repeats` times in rotating order; print each result as it comes; return them per side."""
    results: dict[str, list[float]] = {side: [] for side in sides}
    for r in range(repeats):
        for side in turns(list(sides), r):
            results[side].append(sides[side]())
            print(f"  {label}repeat {r + 1}: {side} {results[side][-1]:.4g}", flush=True)
    return results


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of a side's repeats (the table's figure and how far the runs scatter around it)."""
    if not values:
        raise ValueError("no runs to summarise")
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def encoder_flops(config, lengths: Sequence[int]) -> float:
    """Matmul FLOPs of one forward pass of a BERT-style encoder over texts of these (unpadded) token lengths:
    2 × tokens × layer weights + attention scores and mixing (4 × L² × hidden per layer); embeddings, norms and
    softmax are left out (< 1%). A training step is ~3× this (backward = 2× forward), GradCache's ~4× (plus its
    gradient-free first pass)."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    weights = 4 * d * d + 2 * d * ff
    return float(sum(2 * n * weights * layers + 4 * n * n * d * layers for n in lengths))


def fp32_peak(threads: int, clock_ghz: float | None = None, flop_per_cycle: int = 32) -> tuple[float | None, str]:
    """The CPU's nominal fp32 peak in GFLOP/s for `threads` cores, and a line saying how it was assumed. 32 FLOP per
    cycle = two 256-bit FMA pipes × 8 lanes × 2, as on Zen 2-4 and Haswell-class AVX2 cores; the clock is
    /proc/cpuinfo's "cpu MHz" unless given (cores that boost above it make the share an upper bound)."""
    clock = clock_ghz or _cpuinfo_clock_ghz()
    if not clock:
        return None, "fp32 peak unknown (no clock in /proc/cpuinfo): pass the clock"
    peak = threads * clock * flop_per_cycle
    cores = f"{threads} core{'s' if threads > 1 else ''}"
    return peak, f"fp32 peak assumed: {cores} × {clock} GHz × {flop_per_cycle} FLOP/cycle = {peak:.1f} GFLOP/s"


def _cpuinfo_clock_ghz() -> float | None:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", text) or re.search(r"bogomips\s*:\s*([\d.]+)", text)
    return float(mhz.group(1)) / (1000 if "MHz" in mhz.group(0) else 2000) if mhz else None  # bogomips = 2 × MHz


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
