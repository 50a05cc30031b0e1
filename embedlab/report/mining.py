"""A mining run's files: the training file of mined negatives, mining_report.json and score_histogram.png."""

from __future__ import annotations

from pathlib import Path

from embedlab.io import write_json_atomic, write_jsonl_atomic
from embedlab.mining.mine import MiningResult
from embedlab.mining.select import SelectionConfig
from embedlab.report.plots import histogram_png


def write_mining_outputs(
    result: MiningResult, negatives_path: Path, report_dir: Path, selection: SelectionConfig, label: str, bins: int = 50
) -> dict:
    """The training file, mining_report.json and score_histogram.png (each written atomically); returns the report.
    `label` names the mined set in the plot title (e.g. "scifact train")."""
    write_jsonl_atomic(negatives_path, result.records)
    report = {"counts": result.counts, "false_negatives": result.diagnostics, "selection": selection.__dict__}
    if result.search is not None:
        report["search"] = result.search
    write_json_atomic(report_dir / "mining_report.json", report)
    s = selection
    histogram_png(
        report_dir / "score_histogram.png",
        result.scores,
        title=f"{label}: ranks {s.min_rank}-{s.max_rank}, margin {s.margin}",
        xlabel="similarity to the query",
        bins=bins,
    )
    return report
