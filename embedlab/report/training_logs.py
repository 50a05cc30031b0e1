"""What the runs' training logs say, per configuration: the per-step values a loss logs (InfoNCE's `positive_rank`,
`synthetic_rank`, `synthetic_outranks_pos`, ...), read from Lightning's CSV logs and summarised over seeds as the
first step, the last step and the mean over steps -- the evidence beside a retrieval table of *why* an arm moved."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from embedlab.errors import DataFormatError
from embedlab.report.plots import line_png
from embedlab.report.runs import Run

__all__ = ["log_curves", "log_figures", "log_summary", "read_log", "read_logs", "summary_csv", "summary_markdown"]

Log = dict[str, dict[int, float]]  # column -> {step: value}, one run's


def read_log(run: Path) -> Log:
    """Column -> {step: value}, in step order, from `<run>/logs/**/metrics.csv` (Lightning's CSVLogger; a resumed
    run's later versions override the steps they repeat). Rows where a column is empty do not count for it."""
    by_step: dict[str, dict[int, float]] = {}
    for path in sorted((run / "logs").rglob("metrics.csv"), key=_version):
        rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
        for line, row in enumerate(rows, start=2):  # line 1 is the header
            for column, text in row.items():
                if column in ("step", "epoch") or not text:
                    continue
                try:
                    step, value = int(row["step"]), float(text)
                except (TypeError, ValueError):
                    raise DataFormatError(path, line, column, f"not a number: {text!r}") from None
                by_step.setdefault(column, {})[step] = value
    return {column: dict(sorted(steps.items())) for column, steps in by_step.items()}


def _version(path: Path) -> tuple[int, str]:
    """`version_10` after `version_9`."""
    number = path.parent.name.removeprefix("version_")
    return (int(number) if number.isdigit() else -1, str(path))


def _column(log: Log, name: str) -> dict[int, float]:
    """The training-step column logged as `train/.../<name>` (whichever loss logged it), NaN steps left out; empty
    when the run did not log it."""
    found = sorted(c for c in log if c.startswith("train/") and c.rsplit("/", 1)[-1] == name)
    return {step: v for step, v in log[found[0]].items() if not math.isnan(v)} if found else {}


def read_logs(groups: Mapping[str, Sequence[Run]]) -> dict[str, list[Log]]:
    """Each configuration's runs' logs (read once, for the table and the curves alike)."""
    return {configuration: [read_log(r.path) for r in runs] for configuration, runs in groups.items()}


def log_summary(
    groups: Mapping[str, Sequence[Run]], logs: Mapping[str, Sequence[Log]], names: Sequence[str]
) -> list[dict]:
    """One row per configuration: for each logged name, `<name>_first`, `<name>_last` and `<name>_mean` (over steps),
    each averaged over the configuration's runs that logged it (NaN steps skipped); `<name>_runs`: how many did."""
    rows = []
    for configuration, runs in groups.items():
        row: dict = {"configuration": configuration, "seeds": [r.seed for r in runs]}
        for name in names:
            series = [list(c.values()) for c in (_column(log, name) for log in logs[configuration]) if c]
            row[f"{name}_runs"] = len(series)
            if series:
                row[f"{name}_first"] = statistics.fmean(s[0] for s in series)
                row[f"{name}_last"] = statistics.fmean(s[-1] for s in series)
                row[f"{name}_mean"] = statistics.fmean(statistics.fmean(s) for s in series)
        rows.append(row)
    return rows


def summary_markdown(rows: Sequence[dict], names: Sequence[str]) -> str:
    """Columns `<name>: first → last (mean)`; "—" where no run of the configuration logged it."""
    headers = ["configuration", "seeds", *(f"{n}: first → last step (mean over steps)" for n in names)]
    lines = ["| " + " | ".join(headers) + " |", "|---|---|" + "---:|" * len(names)]
    for row in rows:
        cells = [row["configuration"], ", ".join(map(str, row["seeds"]))]
        for n in names:
            cells.append(
                f"{row[f'{n}_first']:.3f} → {row[f'{n}_last']:.3f} ({row[f'{n}_mean']:.3f})"
                if row[f"{n}_runs"]
                else "—"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_csv(rows: Sequence[dict], names: Sequence[str]) -> str:
    columns = ["configuration", "seeds"] + [f"{n}_{k}" for n in names for k in ("runs", "first", "last", "mean")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "seeds": " ".join(map(str, row["seeds"]))})
    return buf.getvalue()


def log_curves(
    logs: Mapping[str, Sequence[Log]], name: str, window: int = 1
) -> dict[str, tuple[list[int], list[float]]]:
    """Per configuration that logged `name`: (steps, value at each step averaged over the runs that logged that
    step), then with `window` > 1 the trailing mean over that many logged steps (a per-batch loss is noisy)."""
    curves = {}
    for configuration, run_logs in logs.items():
        by_step: dict[int, list[float]] = {}
        for log in run_logs:
            for step, value in _column(log, name).items():
                by_step.setdefault(step, []).append(value)
        if by_step:
            steps = sorted(by_step)
            values = [statistics.fmean(by_step[s]) for s in steps]
            smoothed = [statistics.fmean(values[max(0, i + 1 - window) : i + 1]) for i in range(len(values))]
            curves[configuration] = (steps, smoothed)
    return curves


def log_figures(logs: Mapping[str, Sequence[Log]], names: Sequence[str], out_dir: Path, window: int = 1) -> list[Path]:
    """One PNG per logged name: its curve over training steps, one line per configuration (mean over seeds;
    `window` as in `log_curves`)."""
    written = []
    for name in names:
        curves = log_curves(logs, name, window)
        if curves:
            title = f"{name} per training step (mean over seeds"
            title += f", trailing mean of {window} logged steps)" if window > 1 else ")"
            written.append(line_png(out_dir / f"log_{name}.png", curves, title=title, xlabel="step", ylabel=name))
    return written
