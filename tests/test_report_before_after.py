"""embedlab-report --vs-before: each configuration after training against its runs' own before/ evaluation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sweeps import make_run

from embedlab.cli.report import main
from embedlab.errors import EmbedlabError
from embedlab.io import write_jsonl_atomic
from embedlab.report.before_after import to_markdown, versus_before
from embedlab.report.runs import find_runs

BEFORE = [0.2, 0.4, 0.6, 0.8]  # per query, the untrained model (the same for every seed)
AFTER = {  # configuration -> seed -> per query after training
    "a": {0: [0.5, 0.6, 0.7, 0.9], 1: [0.3, 0.6, 0.9, 0.9]},  # seed mean minus before: 0.2, 0.2, 0.2, 0.1
    "b": {0: [0.3, 0.3, 0.7, 0.7], 1: [0.3, 0.3, 0.7, 0.7]},  # +0.1, -0.1, +0.1, -0.1: no net move
}


def _sweep(root: Path) -> Path:
    for config, seeds in AFTER.items():
        for seed, after in seeds.items():
            per_query = {f"q{i}": v for i, v in enumerate(after)}
            run = make_run(
                root, f"{config}_{seed}", [f"x={config}", f"seed={seed}"], seed, sum(after) / 4, None, per_query
            )
            rows = ({"query_id": f"q{i}", "ndcg_at_10": v} for i, v in enumerate(BEFORE))
            write_jsonl_atomic(run / "before" / "per_query" / "scifact.jsonl", rows)
    return root


def test_before_after_by_hand(tmp_path: Path) -> None:
    rows = versus_before(find_runs([_sweep(tmp_path)]), "scifact", ["ndcg_at_10"], resamples=16)
    a, b = rows
    assert (a["configuration"], b["configuration"]) == ("x=a", "x=b") and a["seeds"] == [0, 1]
    assert a["ndcg_at_10_before"] == pytest.approx(0.5) and a["ndcg_at_10_after"] == pytest.approx(0.675)
    assert a["ndcg_at_10_diff"] == pytest.approx(0.175) and b["ndcg_at_10_diff"] == pytest.approx(0.0, abs=1e-12)
    # exact sign flips over 4 queries: only all-plus and all-minus reach |mean| 0.175 (2 of 16); b's 0 is reached by all
    assert a["ndcg_at_10_p"] == pytest.approx(2 / 16) and b["ndcg_at_10_p"] == 1.0
    assert a["ndcg_at_10_p_holm"] == pytest.approx(0.25) and b["ndcg_at_10_p_holm"] == 1.0  # Holm over the 2
    table = to_markdown(rows, "scifact", ["ndcg_at_10"], "randomization")
    assert (
        "| x=a | 0, 1 | 0.5000 | 0.6750 | +0.1750 | 0.1250 | 0.2500 |" in table and "over this table's 2 tests" in table
    )


def test_cli_appends_the_table_and_a_run_without_before_is_one_error(tmp_path: Path, capsys) -> None:
    sweep = _sweep(tmp_path / "sweep")
    main([str(sweep), "--vs-before", "--resamples", "16", "--no-plots"])
    written = (sweep / "report" / "scifact_comparison.md").read_text()
    assert "After vs before training" in written and "| x=b | 0, 1 | 0.5000 | 0.5000 | +0.0000 | 1.0000" in written
    shutil.rmtree(sweep / "b_1" / "before")
    with pytest.raises(EmbedlabError, match=r"b_1/before: no evaluation before training"):
        versus_before(find_runs([sweep]), "scifact", ["ndcg_at_10"])
