"""PNG figures, written atomically (a reader never sees half a file). matplotlib runs headless (Agg)."""

from __future__ import annotations

from collections.abc import Mapping
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
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
