"""PNG figures, written atomically (a reader never sees half a file). matplotlib runs headless (Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from embedlab.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on CI or remote machines
    import matplotlib.pyplot as plt

    return plt


def histogram_png(
    path: str | Path, series: Mapping[str, np.ndarray], *, title: str, xlabel: str, bins: int = 50
) -> Path:
    """Overlaid density histograms of named value sets on shared bins (empty sets are listed but not drawn)."""
    plt = _pyplot()
    values = [np.asarray(v, dtype=np.float64) for v in series.values() if len(v)]
    lo, hi = (min(v.min() for v in values), max(v.max() for v in values)) if values else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, v in series.items():
        label = f"{name} (n={len(v)})"
        if len(v):
            ax.hist(np.asarray(v, dtype=np.float64), bins=edges, density=True, alpha=0.45, label=label)
        else:
            ax.plot([], [], label=label)
    ax.set(title=title, xlabel=xlabel, ylabel="density")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)
    return path


def bar_png(
    path: str | Path,
    labels: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float | None],
    *,
    title: str,
    ylabel: str,
    notes: Sequence[str] | None = None,
) -> Path:
    """One bar per configuration with its std over seeds as error bar (none for a single seed); `notes` are
    written above the bars (e.g. each row's p-value)."""
    plt = _pyplot()
    lines = [label.split(" ") for label in labels]  # one override per line under its bar
    longest = max((len(part) for parts in lines for part in parts), default=10)
    fig, ax = plt.subplots(figsize=(max(6.0, len(labels) * (0.075 * longest + 0.4) + 1.2), 4.5))
    x = np.arange(len(labels))
    errors = [s or 0.0 for s in stds]
    ax.bar(x, means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    lo = min(m - e for m, e in zip(means, errors, strict=True))
    hi = max(m + e for m, e in zip(means, errors, strict=True))
    pad = max(hi - lo, 1e-3) * 0.6
    ax.set_ylim(max(0.0, lo - pad), hi + pad)  # differences between configurations are small; show them
    for xi, m, e, note in zip(x, means, errors, notes or [""] * len(labels), strict=True):
        ax.annotate(note, (xi, m + e), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(x, ["\n".join(parts) for parts in lines], fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    fig.tight_layout()
    return _save(fig, path)


def line_png(
    path: str | Path,
    series: Mapping[str, tuple[Sequence, Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
) -> Path:
    """One line per named series of (x values, y values); string x values are placed as ordered categories."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (xs, ys) in series.items():
        ax.plot([str(v) for v in xs] if isinstance(xs[0], str) else xs, ys, marker="o", label=name)
    if all(isinstance(v, int) for xs, _ in series.values() for v in xs):
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps, dims: no ticks between whole numbers
    if logx:
        ax.set_xscale("log", base=2)
        ticks = sorted({v for xs, _ in series.values() for v in xs})
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
