"""The comparison job (`embedlab-report`): finished runs grouped by configuration, tested against a baseline, written
as Markdown and CSV tables with PNG figures, and optionally logged to W&B."""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

from embedlab.io import write_text_atomic
from embedlab.report import before_after
from embedlab.report.compare import compare, describe, to_csv, to_markdown
from embedlab.report.figures import report_figures
from embedlab.report.runs import find_runs, group_runs
from embedlab.report.training_logs import log_figures, log_summary, read_logs, summary_csv, summary_markdown
from embedlab.report.wandb_log import from_arguments as log_to_wandb


@dataclass
class Report:
    markdown: str
    files: list[Path]  # tables, then figures
    wandb_run: str | Path | None  # the W&B run folder when --wandb was given


def run(args: Namespace) -> Report:
    """`args`: embedlab-report's arguments (paths, task, metric, baseline, test, resamples, seed, out, no_plots,
    vs_before, log_metric, and the W&B ones)."""
    out = args.out or Path(args.paths[0]) / "report"
    runs = find_runs(args.paths)
    c = compare(runs, args.task, args.metric or ["ndcg_at_10"], args.baseline, args.test, args.resamples, args.seed)
    markdown = f"{describe(c)}\n\n{to_markdown(c)}\n"
    tables = [out / f"{c.task}_comparison.md", out / f"{c.task}_comparison.csv"]
    if args.vs_before:  # did training move each configuration at all
        rows = before_after.versus_before(runs, c.task, c.metrics, args.test, args.resamples, args.seed)
        markdown += f"\n{before_after.to_markdown(rows, c.task, c.metrics, args.test)}\n"
    names, logs = args.log_metric, {}
    if names:  # the training logs' evidence, one row per configuration as in the table above
        groups = group_runs(runs)
        logs = read_logs(groups)
        rows = log_summary(groups, logs, names)
        markdown += f"\nTraining logs (each run's CSV log, averaged over seeds):\n\n{summary_markdown(rows, names)}\n"
        tables.append(out / "training_logs.csv")
        write_text_atomic(tables[-1], summary_csv(rows, names))
    write_text_atomic(tables[0], markdown)
    write_text_atomic(tables[1], to_csv(c))
    figures = [] if args.no_plots else report_figures(runs, c, out) + log_figures(logs, names or [], out)
    return Report(markdown, tables + figures, log_to_wandb(args, c, figures, runs, out))
