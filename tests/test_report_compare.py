"""The comparison report: table with paired p-values vs a baseline, CSV, figures, and the embedlab-report CLI."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sweeps import make_run, make_sweep

from embedlab.cli.report import main
from embedlab.errors import EmbedlabError
from embedlab.report.compare import compare, to_csv, to_markdown
from embedlab.report.runs import find_runs


def test_a_clear_effect_is_significant_and_none_is_not(tmp_path: Path) -> None:
    runs = find_runs([make_sweep(tmp_path / "clear", effect=0.08)])
    c = compare(runs, "scifact", ["ndcg_at_10", "recall_at_10"], baseline="loss=infonce", resamples=2000)
    assert [r["configuration"] for r in c.rows] == ["loss=infonce", "loss=focal_infonce"]
    base, focal = c.rows
    assert base["n"] == 3 and base["seeds"] == [0, 1, 2] and base["queries"] == 60
    assert "ndcg_at_10_p" not in base  # the baseline is not tested against itself
    assert focal["ndcg_at_10_p"] < 0.001 and focal["ndcg_at_10_diff"] == pytest.approx(0.08, abs=0.02)
    assert c.varied == {"loss": ["infonce", "focal_infonce"], "seed": ["0", "1", "2"]}
    # Holm over the table's 2 tests (one row, two metrics): the smaller p doubled, the larger one kept unless smaller
    small, large = sorted([focal["ndcg_at_10_p"], focal["recall_at_10_p"]])
    assert sorted([focal["ndcg_at_10_p_holm"], focal["recall_at_10_p_holm"]]) == [2 * small, max(2 * small, large)]
    null = compare(find_runs([make_sweep(tmp_path / "null", effect=0.0)]), "scifact", ["ndcg_at_10"], resamples=2000)
    assert null.baseline == "loss=infonce"  # default: the first configuration
    assert null.rows[1]["ndcg_at_10_p"] > 0.05


def test_markdown_and_csv_tables(tmp_path: Path) -> None:
    c = compare(find_runs([make_sweep(tmp_path)]), "scifact", ["ndcg_at_10"], "loss=infonce", resamples=500)
    lines = to_markdown(c).splitlines()
    assert lines[0].startswith(
        "| configuration | seeds | scifact ndcg_at_10 (mean ± std) | Δ vs baseline | p | p (Holm) |"
    )
    assert lines[2].startswith("| loss=infonce (baseline) | 0, 1, 2 | 0.") and lines[2].endswith("| — | — | 60 |")
    assert len(lines) == 4 and "| +0.0" in lines[3]
    rows = list(csv.DictReader(io.StringIO(to_csv(c))))
    assert rows[1]["configuration"] == "loss=focal_infonce" and rows[1]["seeds"] == "0 1 2"
    assert float(rows[1]["ndcg_at_10_p"]) < 0.01 and rows[0]["ndcg_at_10_p"] == ""
    assert float(rows[1]["ndcg_at_10_p_holm"]) == float(rows[1]["ndcg_at_10_p"])  # one test: Holm leaves it
    assert float(rows[0]["ndcg_at_10_mean"]) == pytest.approx(c.rows[0]["ndcg_at_10_mean"])


def test_bad_baseline_and_mismatched_queries(tmp_path: Path) -> None:
    runs = find_runs([make_sweep(tmp_path / "s")])
    with pytest.raises(EmbedlabError, match=r"baseline 'infonce' is not a configuration here; choose from \['loss="):
        compare(runs, "scifact", ["ndcg_at_10"], baseline="infonce")
    overrides = ["loss=leaf", "seed=0", "logger=csv", "export=false"]
    other = make_run(tmp_path / "s", "9", overrides, 0, 0.5, {"loss": "leaf"}, {"q0": 0.5, "x": 0.1})
    message = rf"loss=infonce \(.*/s/0\) and loss=leaf \({other}\) scored different queries"
    with pytest.raises(EmbedlabError, match=message):
        compare(find_runs([tmp_path / "s"]), "scifact", ["ndcg_at_10"], baseline="loss=infonce")


def test_runs_without_per_query_files_still_get_a_table(tmp_path: Path) -> None:
    for seed, v in enumerate([0.4, 0.6]):
        make_run(tmp_path, f"r{seed}", ["loss=leaf", f"seed={seed}"], seed, v)
    c = compare(find_runs([tmp_path]), "scifact", ["ndcg_at_10"])
    row = c.rows[0]
    assert row["ndcg_at_10_mean"] == pytest.approx(0.5) and row["ndcg_at_10_std"] == pytest.approx(0.1414, abs=1e-4)
    assert "no paired test" in c.notes[0] and "r0/per_query/scifact.jsonl is missing (2 of 2" in c.notes[0]


def test_cli_writes_tables_and_figures(tmp_path: Path, capsys) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    out = tmp_path / "report"
    argv = [str(sweep), "--baseline", "loss=infonce", "--metric", "ndcg_at_10", "--resamples", "500", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Varied: seed ∈ {0, 1, 2}; loss ∈ {infonce, focal_infonce}." in printed
    assert "| loss=focal_infonce | 0, 1, 2 |" in printed
    assert (out / "scifact_comparison.md").read_text().strip() in printed
    assert (out / "scifact_comparison.csv").read_text().startswith("configuration,n,seeds,queries,ndcg_at_10_mean")
    for name in ("bar", "vs_dim", "vs_precision"):
        png = out / f"scifact_ndcg_at_10_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name
    assert not list(out.glob("*.tmp*")) and not list(out.glob(".*"))  # atomic writes leave no temporary files
    # the default output folder is <first path>/report, and a second report does not mistake it for a run
    assert main([str(sweep), "--no-plots", "--resamples", "100"]) == 0
    assert (sweep / "report" / "scifact_comparison.md").exists() and not list((sweep / "report").glob("*.png"))
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no such run" in capsys.readouterr().err
    assert main([str(sweep), "--baseline", "nope", "--no-plots"]) == 2
    assert "baseline 'nope'" in capsys.readouterr().err
