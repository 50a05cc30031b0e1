"""`embedlab-report --wandb`: the comparison table and figures, logged to the sweep's W&B group as one "report" run.

The table holds the Markdown report's rows as numbers (mean, std, Δ vs baseline and p per metric), so W&B can sort
and chart them; the figures are the report's PNGs. Offline by default (`mode=offline`: files under
<report dir>/wandb, `wandb sync` uploads them later); `mode=online` logs at once. The group is the one the training
runs of the sweep logged to: their configs' `logger.group` when they share one, else the sweep directory (the
folder with Hydra's multirun.yaml, as `embedlab-train -m` names the group), else the first path compared.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from embedlab.report.compare import Comparison
from embedlab.report.runs import Run

MODES = ("offline", "online", "disabled")


def table_columns(c: Comparison) -> list[str]:
    columns = ["configuration", "baseline", "seeds", "n"]
    for m in c.metrics:
        columns += [f"{m}_mean", f"{m}_std", f"{m}_diff", f"{m}_p", f"{m}_p_holm"]
    return [*columns, "queries"]


def table_rows(c: Comparison) -> list[list]:
    """The comparison's rows in `table_columns` order; cells the Markdown shows as "—" are None."""
    rows = []
    for row in c.rows:
        cells = [row["configuration"], row["configuration"] == c.baseline, ", ".join(map(str, row["seeds"])), row["n"]]
        for m in c.metrics:
            cells += [row.get(f"{m}_{k}") for k in ("mean", "std", "diff", "p", "p_holm")]
        rows.append([*cells, row.get("queries")])
    return rows


def sweep_group(runs: Sequence[Run], fallback: str | Path) -> str:
    """The W&B group of the runs' sweep (see the module docstring)."""
    groups = {
        ((yaml.safe_load((r.path / "config.yaml").read_text()) or {}).get("logger") or {}).get("group") for r in runs
    }
    if len(groups) == 1 and None not in groups:
        return str(groups.pop())
    sweeps = {_sweep_dir(r.path) for r in runs}
    if len(sweeps) == 1 and None not in sweeps:
        sweep = sweeps.pop()
        assert sweep is not None
        return os.path.relpath(sweep) if sweep.resolve().is_relative_to(Path.cwd().resolve()) else str(sweep)
    return str(fallback)


def _sweep_dir(run: Path) -> Path | None:
    return next((p for p in [run, *run.parents] if (p / "multirun.yaml").exists()), None)


def log_report(
    c: Comparison,
    figures: Sequence[Path],
    *,
    group: str,
    project: str = "embedlab",
    mode: str = "offline",
    out: Path,
) -> Path:
    """Log the table (`<task>_comparison`) and figures (`figures/<name>`) as one run of `group`; returns the run's
    local folder (<out>/wandb/offline-run-... or run-...)."""
    import wandb

    if mode not in MODES:
        raise ValueError(f"W&B mode must be one of {', '.join(MODES)}, got {mode!r}")
    out.mkdir(parents=True, exist_ok=True)
    config = {"task": c.task, "metrics": c.metrics, "baseline": c.baseline, "test": c.method}
    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        name=f"report {c.task}",
        mode=mode,
        dir=str(out),
        config={**config, "resamples": c.resamples, "varied": c.varied},
        reinit="finish_previous",
    )
    try:
        logged = {f"{c.task}_comparison": wandb.Table(columns=table_columns(c), data=table_rows(c))}
        logged.update({f"figures/{Path(p).stem}": wandb.Image(str(p)) for p in figures})
        run.log(logged)
        folder = Path(run.dir).parent
    finally:
        run.finish()
    return folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`embedlab-report`'s W&B options."""
    parser.add_argument("--wandb", action="store_true", help="also log the table and figures to W&B")
    parser.add_argument("--wandb-project", default="embedlab", help="W&B project (default: embedlab)")
    parser.add_argument("--wandb-group", help="W&B group (default: the sweep's, as its training runs logged)")
    parser.add_argument("--wandb-mode", choices=MODES, default="offline", help="offline (sync later) | online")


def from_arguments(args: argparse.Namespace, c: Comparison, figures: Sequence[Path], runs: Sequence[Run], out: Path):
    """Log when `--wandb` was given; the run folder, else None."""
    if not args.wandb:
        return None
    group = args.wandb_group or sweep_group(runs, args.paths[0])
    return log_report(c, figures, group=group, project=args.wandb_project, mode=args.wandb_mode, out=out)
