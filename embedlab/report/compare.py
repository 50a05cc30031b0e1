"""The comparison table of a sweep: one row per configuration, mean ± std over seeds and, for each metric, a paired
test over queries against a baseline row (see `significance` for how seeds are combined)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from embedlab.data import get_task
from embedlab.errors import EmbedlabError
from embedlab.report.runs import Run, group_runs, summarize, varied_knobs
from embedlab.report.significance import METHODS, holm, metric_by_query, paired_arrays, paired_test

__all__ = ["METHODS", "Comparison", "add_holm", "compare", "describe", "format_p", "to_csv", "to_markdown"]


@dataclass
class Comparison:
    task: str
    metrics: list[str]
    baseline: str
    method: str
    resamples: int
    rows: list[dict]  # configuration, n, seeds, queries, <metric>_mean/_std/_diff/_p/_p_holm per metric
    varied: dict[str, list[str]] = field(default_factory=dict)  # knob -> values, over all runs compared
    notes: list[str] = field(default_factory=list)


def compare(
    runs: Sequence[Run],
    task: str,
    metrics: Sequence[str],
    baseline: str | None = None,
    method: str = "randomization",
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """`baseline`: a configuration name as the table prints it (default: the first configuration)."""
    groups = group_runs(runs)
    baseline = baseline or next(iter(groups))
    if baseline not in groups:
        raise EmbedlabError(f"baseline {baseline!r} is not a configuration here; choose from {list(groups)}")
    rows = [
        {"configuration": name, "n": len(members), "seeds": [r.seed for r in members]}
        for name, members in groups.items()
    ]
    notes = []
    per_query = get_task(task).kind == "retrieval"  # STS scores per pair, not per query: no paired metric
    if not per_query:
        notes.append(f"{task} has no per-query metric: no paired test.")
    missing = [r.path / "per_query" / f"{task}.jsonl" for r in runs]
    missing = [p for p in missing if not p.exists()]
    if per_query and missing:  # runs from before per-query files existed: still worth a table
        per_query = False
        notes.append(f"no paired test: {missing[0]} is missing ({len(missing)} of {len(runs)} runs lack it).")
    for metric in metrics:
        for row, summary in zip(rows, summarize(runs, task, metric), strict=True):
            row[f"{metric}_mean"], row[f"{metric}_std"] = summary["mean"], summary["std"]
        if not per_query:
            continue
        by_query = {name: metric_by_query([r.path for r in members], task, metric) for name, members in groups.items()}
        base = by_query[baseline]
        for row in rows:
            name = row["configuration"]
            labels = tuple(f"{n} ({groups[n][0].path})" for n in (baseline, name))
            a, b = paired_arrays(base, by_query[name], labels, task)
            row["queries"] = len(a)
            if name != baseline:
                result = paired_test(a, b, method, resamples=resamples, seed=seed)
                row[f"{metric}_diff"], row[f"{metric}_p"] = result.mean_diff, result.p_value
    add_holm(rows, metrics)
    return Comparison(task, list(metrics), baseline, method, resamples, rows, varied_knobs(runs), notes)


def add_holm(rows: Sequence[dict], metrics: Sequence[str]) -> None:
    """`<metric>_p_holm` beside each `<metric>_p` of `rows`: Holm over every test in the table (rows × metrics), the
    family a reader scans for "significant" cells."""
    tested = [(row, m) for row in rows for m in metrics if f"{m}_p" in row]
    for (row, m), adjusted in zip(tested, holm([row[f"{m}_p"] for row, m in tested]), strict=True):
        row[f"{m}_p_holm"] = adjusted


def _mean_std(row: dict, metric: str, digits: int = 4) -> str:
    std = row.get(f"{metric}_std")
    return f"{row[f'{metric}_mean']:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def format_p(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def to_markdown(c: Comparison) -> str:
    headers = ["configuration", "seeds"]
    for m in c.metrics:
        headers += [f"{c.task} {m} (mean ± std)", "Δ vs baseline", "p", "p (Holm)"]
    headers.append("queries")
    lines = ["| " + " | ".join(headers) + " |", "|---|---|" + "---:|---:|---:|---:|" * len(c.metrics) + "---:|"]
    for row in c.rows:
        name = row["configuration"] + (" (baseline)" if row["configuration"] == c.baseline else "")
        cells = [name, ", ".join(map(str, row["seeds"]))]
        for m in c.metrics:
            diff = row.get(f"{m}_diff")
            cells += [_mean_std(row, m), f"{diff:+.4f}" if diff is not None else "—", format_p(row.get(f"{m}_p"))]
            cells.append(format_p(row.get(f"{m}_p_holm")))
        cells.append(str(row.get("queries", "—")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(c: Comparison) -> str:
    """The lines that say what was compared and how (above the table in the Markdown file)."""
    knobs = "; ".join(f"{k} ∈ {{{', '.join(v)}}}" for k, v in c.varied.items()) or "nothing"
    tests = sum(f"{m}_p" in row for row in c.rows for m in c.metrics)
    test = f"paired {c.method} test over queries ({c.resamples} resamples; seeds averaged per query), two-sided"
    test += f"; p (Holm): Holm-adjusted over the table's {tests} tests"
    return "\n".join([f"Varied: {knobs}.", f"Baseline: {c.baseline}. p: {test}.", *c.notes])


def to_csv(c: Comparison) -> str:
    columns = ["configuration", "n", "seeds", "queries"]
    for m in c.metrics:
        columns += [f"{m}_mean", f"{m}_std", f"{m}_diff", f"{m}_p", f"{m}_p_holm"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in c.rows:
        writer.writerow({**row, "seeds": " ".join(map(str, row["seeds"]))})
    return buf.getvalue()
