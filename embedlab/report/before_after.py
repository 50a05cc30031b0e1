"""Did training move each configuration? Its runs after training against the same runs' own evaluation before training
(`<run>/before/`, what `embedlab-train` writes with `eval.before_training: true`), paired over queries.

Per configuration and metric: the mean over queries before and after, Δ = after − before, and a paired test over
queries (each query's before and after values averaged over the seeds, as `compare` does across configurations);
Holm over every test of this table, a family of its own beside the comparison table's.
"""

from __future__ import annotations

from collections.abc import Sequence

from embedlab.errors import EmbedlabError
from embedlab.report.compare import add_holm, format_p
from embedlab.report.runs import Run, group_runs
from embedlab.report.significance import metric_by_query, paired_arrays, paired_test

BEFORE = "before"  # the folder embedlab-train evaluates the untrained model into


def versus_before(
    runs: Sequence[Run],
    task: str,
    metrics: Sequence[str],
    method: str = "randomization",
    resamples: int = 10_000,
    seed: int = 0,
) -> list[dict]:
    """One row per configuration: configuration, seeds, queries, <metric>_before/_after/_diff/_p/_p_holm."""
    rows = []
    for name, members in group_runs(runs).items():
        befores = [r.path / BEFORE for r in members]
        missing = [b for b in befores if not b.is_dir()]
        if missing:
            raise EmbedlabError(f"{missing[0]}: no evaluation before training (train with eval.before_training=true)")
        row: dict = {"configuration": name, "seeds": [r.seed for r in members]}
        for metric in metrics:
            before = metric_by_query(befores, task, metric)
            after = metric_by_query([r.path for r in members], task, metric)
            a, b = paired_arrays(before, after, (f"{name} before ({befores[0]})", f"{name} ({members[0].path})"), task)
            result = paired_test(a, b, method, resamples=resamples, seed=seed)
            row[f"{metric}_before"], row[f"{metric}_after"] = float(a.mean()), float(b.mean())  # = metrics.json's
            row["queries"], row[f"{metric}_diff"], row[f"{metric}_p"] = len(a), result.mean_diff, result.p_value
        rows.append(row)
    add_holm(rows, metrics)
    return rows


def to_markdown(rows: Sequence[dict], task: str, metrics: Sequence[str], method: str) -> str:
    """The table, with a line above it saying what was tested."""
    tests = len(rows) * len(metrics)
    lines = [
        f"After vs before training (each run's own `{BEFORE}/` evaluation; paired {method} test over queries, seeds "
        f"averaged per query; p (Holm): over this table's {tests} tests):",
        "",
    ]
    headers = ["configuration", "seeds"]
    for m in metrics:
        headers += [f"{task} {m} before", "after", "Δ", "p", "p (Holm)"]
    lines += ["| " + " | ".join(headers) + " |", "|---|---|" + "---:|" * (5 * len(metrics))]
    for row in rows:
        cells = [row["configuration"], ", ".join(map(str, row["seeds"]))]
        for m in metrics:
            cells += [
                f"{row[f'{m}_before']:.4f}",
                f"{row[f'{m}_after']:.4f}",
                f"{round(row[f'{m}_diff'], 4) + 0.0:+.4f}",
            ]  # no -0.0000
            cells += [format_p(row[f"{m}_p"]), format_p(row[f"{m}_p_holm"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
