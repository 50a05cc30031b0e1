"""The report's figures: metric per configuration (bar, std over seeds), metric vs Matryoshka dimension and metric
vs precision (from each run's grid.jsonl, averaged over seeds; drawn only when the runs evaluated such a grid)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from embedlab.data.lines import read_jsonl
from embedlab.errors import DataFormatError
from embedlab.report.compare import Comparison
from embedlab.report.plots import bar_png, line_png
from embedlab.report.runs import Run, group_runs

PRECISION_ORDER = ("float32", "int8", "binary")  # most to least bits


def read_grid(run: str | Path) -> list[dict]:
    """The rows of `<run>/grid.jsonl` (one per task, dim, precision); [] when the run evaluated one cell only."""
    path = Path(run) / "grid.jsonl"
    if not path.exists():
        return []
    rows = []
    for line_no, row in read_jsonl(path):
        for key in ("task", "dim", "precision"):
            if key not in row:
                raise DataFormatError(path, line_no, key, "missing")
        rows.append(row)
    return rows


def grid_means(runs: Sequence[str | Path], task: str, metric: str) -> dict[tuple[int, str], float]:
    """(dim, precision) -> the metric averaged over the runs (seeds) that have that cell."""
    cells: dict[tuple[int, str], list[float]] = {}
    for run in runs:
        for row in read_grid(run):
            if row["task"] == task and metric in row:
                cells.setdefault((int(row["dim"]), str(row["precision"])), []).append(float(row[metric]))
    return {k: statistics.fmean(v) for k, v in cells.items()}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def precision_key(p: str) -> tuple[int, str]:
    return (PRECISION_ORDER.index(p) if p in PRECISION_ORDER else len(PRECISION_ORDER), p)


def grid_figures(grids: dict[str, dict[tuple[int, str], float]], out_dir: Path, task: str, metric: str) -> list[Path]:
    """Metric vs dim (highest precision, one line per series) and metric vs precision (full dim); `grids`: series
    name (a configuration, or a system of one run) -> grid_means."""
    grids = {name: g for name, g in grids.items() if len(g) > 1}
    if not grids:
        return []
    written = []
    precision = min((p for g in grids.values() for _, p in g), key=precision_key)
    by_dim = {}
    for name, g in grids.items():
        dims = sorted(d for d, p in g if p == precision)
        if len(dims) > 1:
            by_dim[name] = (dims, [g[(d, precision)] for d in dims])
    if by_dim:
        path = out_dir / f"{_slug(task)}_{_slug(metric)}_vs_dim.png"
        title = f"{task} {metric} vs Matryoshka dimension ({precision})"
        written.append(line_png(path, by_dim, title=title, xlabel="dimension (log scale)", ylabel=metric, logx=True))
    by_precision = {}
    for name, g in grids.items():
        full = max(d for d, _ in g)
        precisions = sorted({p for d, p in g if d == full}, key=precision_key)
        if len(precisions) > 1:
            by_precision[name] = (precisions, [g[(full, p)] for p in precisions])
    if by_precision:
        path = out_dir / f"{_slug(task)}_{_slug(metric)}_vs_precision.png"
        title = f"{task} {metric} vs precision (full dimension)"
        written.append(line_png(path, by_precision, title=title, xlabel="precision", ylabel=metric))
    return written


def _note(row: dict, metric: str, baseline: str) -> str:
    if row["configuration"] == baseline:
        return "baseline"
    p = row.get(f"{metric}_p")
    return "" if p is None else f"p={p:.2g}"


def report_figures(runs: Sequence[Run], c: Comparison, out_dir: str | Path) -> list[Path]:
    """Every figure of a comparison, as PNG files in `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    groups = group_runs(runs)
    written = []
    for metric in c.metrics:
        labels = [f"{row['configuration']} (n={row['n']})" for row in c.rows]
        path = out_dir / f"{_slug(c.task)}_{_slug(metric)}_bar.png"
        written.append(
            bar_png(
                path,
                labels,
                [row[f"{metric}_mean"] for row in c.rows],
                [row[f"{metric}_std"] for row in c.rows],
                title=f"{c.task} {metric}: mean ± std over seeds",
                ylabel=metric,
                notes=[_note(row, metric, c.baseline) for row in c.rows],
            )
        )
        grids = {name: grid_means([r.path for r in members], c.task, metric) for name, members in groups.items()}
        written += grid_figures(grids, out_dir, c.task, metric)
    return written
