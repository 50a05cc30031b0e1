"""The like-for-like rules every benchmark here follows (issue 17 item 6), in one place: what a run records about
itself (commit, CPU, torch's CPU capability, threads, versions), the order in which contenders take turns (rotating,
so each goes first equally often: A,B then B,A for two), and how repeats are summarised (median, with min and max).
"""

from __future__ import annotations

import importlib.metadata
import os
import statistics
from collections.abc import Callable, Sequence

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


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
