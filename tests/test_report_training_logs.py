"""The training-log table of embedlab-report: per-step values from Lightning's CSV logs, first/last/mean over seeds."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sweeps import make_run

from embedlab.cli.report import main
from embedlab.errors import DataFormatError
from embedlab.report.runs import find_runs, group_runs
from embedlab.report.training_logs import log_curves, log_summary, read_log, read_logs, summary_markdown

HEADER = "epoch,lr-AdamW/backbone,step,train/infonce,train/infonce/positive_rank,train/infonce/synthetic_rank\n"


def _log(run: Path, text: str, version: int = 0) -> None:
    folder = run / "logs" / f"version_{version}"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(HEADER + text)


def _runs(root: Path) -> list[Path]:
    """Two configurations, two seeds each; the focal arm logs no synthetic_rank (it does not mix)."""
    q = {"q0": 0.5, "q1": 0.4}
    runs = [make_run(root, f"i{s}", ["loss=infonce", f"seed={s}"], s, 0.5, {"loss": "infonce"}, q) for s in (0, 1)]
    runs += [
        make_run(root, f"f{s}", ["loss=focal_infonce", f"seed={s}"], s, 0.5, {"loss": "focal_infonce"}, q)
        for s in (0, 1)
    ]
    # lr rows (empty train columns) as Lightning writes them; synthetic_rank NaN at step 1 of seed 0
    _log(runs[0], ",0.1,0,,,\n0,,0,2.0,30.0,2.0\n0,,1,1.5,20.0,nan\n0,,2,1.0,10.0,4.0\n")
    _log(runs[1], "0,,0,2.0,40.0,1.0\n0,,1,1.0,20.0,3.0\n")
    focal = "epoch,step,train/focal_infonce/positive_rank\n"
    for run, text in zip(runs[2:], ["0,0,8.0\n0,1,6.0\n", "0,0,4.0\n0,1,2.0\n"], strict=True):
        (run / "logs" / "version_0").mkdir(parents=True)
        (run / "logs" / "version_0" / "metrics.csv").write_text(focal + text)
    return runs


def test_first_last_and_mean_by_hand(tmp_path: Path) -> None:
    _runs(tmp_path)
    groups = group_runs(find_runs([tmp_path]))
    rows = log_summary(groups, read_logs(groups), ["positive_rank", "synthetic_rank"])
    focal, infonce = sorted(rows, key=lambda r: r["configuration"])
    # infonce positive_rank: seed 0 steps 30, 20, 10 (mean 20); seed 1 steps 40, 20 (mean 30)
    assert infonce["positive_rank_first"] == pytest.approx((30 + 40) / 2)
    assert infonce["positive_rank_last"] == pytest.approx((10 + 20) / 2)
    assert infonce["positive_rank_mean"] == pytest.approx((20 + 30) / 2)
    # synthetic_rank: seed 0 has 2, nan, 4 (NaN skipped: mean 3); seed 1 has 1, 3 (mean 2)
    assert (infonce["synthetic_rank_first"], infonce["synthetic_rank_last"]) == (pytest.approx(1.5), pytest.approx(3.5))
    assert infonce["synthetic_rank_mean"] == pytest.approx(2.5) and infonce["synthetic_rank_runs"] == 2
    # the focal loss logs under its own name; it never logs synthetic_rank
    assert focal["positive_rank_first"] == pytest.approx(6.0) and focal["positive_rank_mean"] == pytest.approx(5.0)
    assert focal["synthetic_rank_runs"] == 0 and "synthetic_rank_mean" not in focal
    table = summary_markdown(rows, ["positive_rank", "synthetic_rank"]).splitlines()
    assert "| loss=infonce | 0, 1 | 35.000 → 15.000 (25.000) | 1.500 → 3.500 (2.500) |" in table
    assert "| loss=focal_infonce | 0, 1 | 6.000 → 4.000 (5.000) | — |" in table


def test_curves_average_each_step_over_the_runs_that_logged_it(tmp_path: Path) -> None:
    _runs(tmp_path)
    logs = read_logs(group_runs(find_runs([tmp_path])))
    curves = log_curves(logs, "positive_rank")
    assert curves["loss=infonce"] == ([0, 1, 2], [35.0, 20.0, 10.0])  # step 2: seed 0 only
    assert curves["loss=focal_infonce"] == ([0, 1], [6.0, 4.0])
    # synthetic_rank: seed 0 logged NaN at step 1, so that step is seed 1's alone; focal never logged it
    assert log_curves(logs, "synthetic_rank") == {"loss=infonce": ([0, 1, 2], [1.5, 3.0, 4.0])}
    # a trailing mean over 2 logged steps: each point with the one before it (the first alone)
    assert log_curves(logs, "positive_rank", window=2)["loss=infonce"] == ([0, 1, 2], [35.0, 27.5, 15.0])


def test_a_resumed_run_s_later_version_overrides_the_steps_it_repeats(tmp_path: Path) -> None:
    run = tmp_path / "r"
    _log(run, "0,,0,2.0,30.0,\n0,,1,1.0,20.0,\n", version=0)
    _log(run, "0,,1,1.0,25.0,\n0,,2,1.0,5.0,\n", version=10)  # sorted by number: version_10 after version_0
    _log(run, "0,,2,1.0,7.0,\n", version=9)
    assert read_log(run)["train/infonce/positive_rank"] == {0: 30.0, 1: 25.0, 2: 5.0}


def test_a_bad_cell_names_file_line_and_column(tmp_path: Path) -> None:
    _log(tmp_path / "r", "0,,0,2.0,30.0,\n0,,1,1.0,oops,\n")
    with pytest.raises(DataFormatError, match=r"version_0/metrics.csv, line 3: field 'train/infonce/positive_rank'"):
        read_log(tmp_path / "r")


def test_cli_appends_the_table_and_writes_its_csv(tmp_path: Path, capsys) -> None:
    _runs(tmp_path / "sweep")
    out = tmp_path / "report"
    argv = [str(tmp_path / "sweep"), "--no-plots", "--resamples", "100", "--out", str(out)]
    assert main([*argv, "--log-metric", "positive_rank"]) == 0
    assert not (out / "log_positive_rank.png").exists()  # --no-plots
    plots = [
        str(tmp_path / "sweep"),
        "--resamples",
        "100",
        "--log-metric",
        "positive_rank",
        "--out",
        str(tmp_path / "plots"),
    ]
    assert main(plots) == 0
    png = tmp_path / "plots" / "log_positive_rank.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    printed = capsys.readouterr().out
    assert "Training logs (each run's CSV log, averaged over seeds):" in printed
    assert "| loss=infonce | 0, 1 | 35.000 → 15.000 (25.000) |" in (out / "scifact_comparison.md").read_text()
    rows = {r["configuration"]: r for r in csv.DictReader(io.StringIO((out / "training_logs.csv").read_text()))}
    assert float(rows["loss=infonce"]["positive_rank_mean"]) == 25.0 and rows["loss=infonce"]["seeds"] == "0 1"
    assert main(argv) == 0 and "Training logs" not in capsys.readouterr().out  # only when asked
