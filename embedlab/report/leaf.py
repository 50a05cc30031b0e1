"""A LEAF run directory read for analysis: how closely the student matches the teacher, asymmetric (teacher documents
× student queries) against symmetric retrieval, and how each system holds up over the dims × precision grid.

What `embedlab-train` writes into a run with a teacher (every system folder has the embedlab-eval layout):
  .                   the trained student          teacher/              the teacher
  before/             the student before training  asymmetric/           teacher docs × trained student queries
  asymmetric_before/  teacher docs × untrained student queries
  heldout_cosine.jsonl  per held-out text: student–teacher cosine before and after training
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedlab.errors import DataFormatError, EmbedlabError
from embedlab.report.figures import grid_means, precision_key
from embedlab.report.significance import PairedTest, metric_by_query, paired_arrays, paired_test

SYSTEMS = {  # system name (as in results.json) -> folder inside the run
    "teacher": "teacher",
    "student (as shipped)": "shipped",  # the student's backbone as released, in its own space (no new head)
    "student (before)": "before",
    "student": ".",
    "asymmetric (before)": "asymmetric_before",
    "asymmetric": "asymmetric",
}


def systems(run: str | Path) -> dict[str, Path]:
    """The evaluated systems present in `run`, in SYSTEMS order."""
    run = Path(run)
    if not (run / "results.json").exists():
        raise EmbedlabError(f"{run}: not an embedlab-train run directory (no results.json)")
    return {name: run / folder for name, folder in SYSTEMS.items() if (run / folder / "metrics.json").exists()}


def heldout_cosines(run: str | Path) -> dict[str, np.ndarray]:
    """{"before": ..., "after": ...}: student–teacher cosine of each held-out text."""
    path = Path(run) / "heldout_cosine.jsonl"
    if not path.exists():
        raise EmbedlabError(f"{path} is missing: it is written by runs with a teacher table and data.heldout > 0")
    before, after = [], []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
            before.append(float(row["before"]))
            after.append(float(row["after"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataFormatError(path, line_no, None, f"expected 'before' and 'after' cosines ({e})") from None
    return {"before": np.array(before), "after": np.array(after)}


def main_metrics(run: str | Path, task: str, metric: str) -> dict[str, float]:
    """System -> the metric of its main cell (full dimension, first precision)."""
    out = {}
    for name, folder in systems(run).items():
        value = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get(task, {}).get(metric)
        if value is not None:
            out[name] = float(value)
    return out


def asymmetric_vs_symmetric(
    run: str | Path, task: str, metric: str, resamples: int = 10_000, stage: str = ""
) -> PairedTest:
    """Paired test over queries: asymmetric (teacher docs) minus symmetric (student docs), same student queries.
    `stage`: "" after training, " (before)" before it."""
    found = systems(run)
    a_name, b_name = f"student{stage}", f"asymmetric{stage}"
    if a_name not in found or b_name not in found:
        raise EmbedlabError(f"{run}: needs both {a_name!r} and {b_name!r} evaluated (eval.asymmetric=true)")
    a = metric_by_query([found[a_name]], task, metric)
    b = metric_by_query([found[b_name]], task, metric)
    return paired_test(*paired_arrays(a, b, (str(found[a_name]), str(found[b_name])), task), resamples=resamples)


def grid_table(run: str | Path, task: str, metric: str) -> list[dict]:
    """One row per (system, dim): the metric at each precision and its share of the system's own full-size float
    cell ("retained"), the robustness a student may or may not inherit from its teacher."""
    rows = []
    for name, folder in systems(run).items():
        grid = grid_means([folder], task, metric)
        if not grid:
            continue
        full = max(d for d, _ in grid)
        reference = grid.get((full, "float32"))
        for dim in sorted({d for d, _ in grid}, reverse=True):
            row: dict = {"system": name, "dim": dim}
            for precision in sorted({p for _, p in grid}, key=precision_key):
                value = grid.get((dim, precision))
                row[precision] = value
                if value is not None and reference:
                    row[f"{precision} retained"] = value / reference
            rows.append(row)
    return rows
