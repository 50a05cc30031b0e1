"""Collecting run directories and grouping them by configuration over seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sweeps import make_run

from embedlab.errors import DataFormatError, EmbedlabError
from embedlab.report.runs import configuration_names, find_runs, summarize


def test_groups_by_varied_overrides_over_seeds(tmp_path: Path) -> None:
    common = ["trainer.max_steps=5"]
    values = {("g1", 0): 0.60, ("g1", 1): 0.62, ("g2", 0): 0.50, ("g2", 1): 0.54, ("g2", 2): 0.52}
    for (g, seed), v in values.items():
        overrides = [*common, "loss=focal_infonce", f"loss.gamma={g[1]}", f"seed={seed}"]
        make_run(tmp_path, f"{g}_{seed}", overrides, seed, v)
    make_run(tmp_path, "plain", [*common, "seed=0"], 0, 0.58)

    runs = find_runs([tmp_path])
    assert len(runs) == 6  # the before/ folders are not runs
    rows = {r["configuration"]: r for r in summarize(runs, "scifact", "ndcg_at_10")}
    assert set(rows) == {"loss=focal_infonce loss.gamma=1", "loss=focal_infonce loss.gamma=2", "(default)"}
    g2 = rows["loss=focal_infonce loss.gamma=2"]
    assert g2["n"] == 3 and g2["seeds"] == [0, 1, 2]
    assert g2["mean"] == pytest.approx(0.52)
    assert g2["std"] == pytest.approx(0.02)  # sample std of 0.50, 0.54, 0.52
    assert rows["(default)"]["std"] is None and rows["(default)"]["mean"] == pytest.approx(0.58)
    assert math.isclose(rows["loss=focal_infonce loss.gamma=1"]["std"], math.sqrt(2 * 0.01**2))


def test_configuration_names_drop_shared_overrides(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", ["x=1", "y=2", "seed=0"], 0, 0.1)
    b = make_run(tmp_path, "b", ["x=1", "y=3", "+seed=1"], 1, 0.2)
    c = make_run(tmp_path, "c", ["x=1", "y=3", "seed=2", "resume=true", "checkpoint.every_n_steps=5"], 2, 0.2)
    assert configuration_names(find_runs([a, b, c])) == ["y=2", "y=3", "y=3"]  # a resumed run is no new config


def test_a_default_group_option_is_named_when_others_override_it(tmp_path: Path) -> None:
    make_run(
        tmp_path, "a", ["loss=focal_infonce", "loss.focal_infonce.gamma=2", "seed=0"], 0, 0.5, {"loss": "focal_infonce"}
    )
    make_run(tmp_path, "b", ["seed=0"], 0, 0.6, {"loss": "infonce", "model": "minilm"})
    names = configuration_names(find_runs([tmp_path]))
    assert names == ["loss=focal_infonce loss.focal_infonce.gamma=2", "loss=infonce"]


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(EmbedlabError, match="no such run"):
        find_runs([tmp_path / "missing"])
    with pytest.raises(EmbedlabError, match="no run directories"):
        find_runs([tmp_path])
    run = make_run(tmp_path, "r", ["seed=0"], 0, 0.3)
    with pytest.raises(DataFormatError, match=r"metrics.json.*'scifact.map_at_1': missing"):
        summarize(find_runs([run]), "scifact", "map_at_1")
    (run / "metrics.json").write_text('{"scifact": ')
    with pytest.raises(DataFormatError, match=r"r/metrics.json, line 1: not valid JSON"):
        find_runs([run])


def test_varied_knobs_name_what_the_sweep_changes(tmp_path: Path) -> None:
    from embedlab.report.runs import varied_knobs

    make_run(tmp_path, "a", ["logger=csv", "loss=focal_infonce", "loss.gamma=1", "seed=0"], 0, 0.1)
    make_run(tmp_path, "b", ["logger=csv", "loss=focal_infonce", "loss.gamma=2", "seed=1"], 1, 0.1)
    make_run(tmp_path, "c", ["logger=csv", "seed=0"], 0, 0.1)
    assert varied_knobs(find_runs([tmp_path])) == {
        "loss": ["focal_infonce", "(default)"],
        "loss.gamma": ["1", "2", "(default)"],
        "seed": ["0", "1"],
    }


def test_boolean_spellings_of_single_runs_and_multiruns_are_one_configuration(tmp_path: Path) -> None:
    """A single run records `export=false`, a multirun `export=False`: the same configuration."""
    make_run(tmp_path, "single", ["export=false", "loss=infonce", "seed=0"], seed=0, ndcg=0.5)
    make_run(tmp_path, "multi", ["export=False", "loss=infonce", "seed=1"], seed=1, ndcg=0.6)
    make_run(tmp_path, "other", ["export=False", "loss=focal_infonce", "seed=0"], seed=0, ndcg=0.4)
    runs = find_runs([tmp_path])
    assert {r.overrides[0] for r in runs} == {"export=false"}
    names = dict(zip((r.path.name for r in runs), configuration_names(runs), strict=True))
    assert names["single"] == names["multi"] != names["other"]


def test_a_recipe_and_its_spelled_out_overrides_are_one_configuration(tmp_path: Path) -> None:
    """Grouped by resolved config: `experiment=kalm_v2` and the same settings typed out are one row, named by both
    spellings; the seed, the logger and the run's own paths (mined negatives) do not split a configuration."""
    from embedlab.report.runs import group_runs

    def config(run: str, seed: int, gamma: float = 0.0, logger: str = "csv") -> dict:
        negatives = str(tmp_path / run / "mining" / "negatives.jsonl")
        loss = {"focal_infonce": {"gamma": gamma}} if gamma else {"infonce": {"temperature": 0.05}}
        return {"seed": seed, "export": False, "loss": loss, "data": {"negatives_file": negatives}, "logger": logger}

    make_run(tmp_path, "recipe0", ["experiment=kalm_v2", "seed=0"], 0, 0.60, config=config("recipe0", 0))
    make_run(tmp_path, "recipe1", ["experiment=kalm_v2", "seed=1"], 1, 0.62, config=config("recipe1", 1, logger="w"))
    make_run(tmp_path, "typed2", ["export=false", "seed=2"], 2, 0.61, config=config("typed2", 2))
    focal = ["experiment=kalm_v2", "loss=focal_infonce", "loss.focal_infonce.gamma=1", "seed=0"]
    make_run(tmp_path, "focal0", focal, 0, 0.55, config=config("focal0", 0, gamma=1.0))
    groups = group_runs(find_runs([tmp_path]))
    assert {name: [r.path.name for r in runs] for name, runs in groups.items()} == {
        "experiment=kalm_v2 loss=focal_infonce loss.focal_infonce.gamma=1": ["focal0"],
        "experiment=kalm_v2 ≡ export=false": ["recipe0", "recipe1", "typed2"],
    }
    rows = {r["configuration"]: r for r in summarize(find_runs([tmp_path]), "scifact", "ndcg_at_10")}
    recipe = rows["experiment=kalm_v2 ≡ export=false"]
    assert recipe["n"] == 3 and recipe["seeds"] == [0, 1, 2] and recipe["mean"] == pytest.approx(0.61)


def test_same_overrides_but_different_resolved_configs_are_two_rows(tmp_path: Path) -> None:
    """E.g. a default changed between commits: the rows say which key differs instead of pooling the seeds."""
    from embedlab.report.runs import group_runs

    make_run(tmp_path, "old", ["seed=0"], 0, 0.5, config={"seed": 0, "optim": {"lr": 2e-5}})
    make_run(tmp_path, "new", ["seed=1"], 1, 0.6, config={"seed": 1, "optim": {"lr": 1e-5}})
    assert sorted(group_runs(find_runs([tmp_path]))) == ["(default) [optim.lr=1e-05]", "(default) [optim.lr=2e-05]"]


def test_a_job_stopped_before_its_run_record_is_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    make_run(tmp_path, "done", ["seed=0"], 0, 0.5)
    stopped = make_run(tmp_path, "stopped", ["seed=1"], 1, 0.9)
    (stopped / "config.yaml").unlink()  # killed after metrics.json, before write_run_record
    with caplog.at_level("WARNING", logger="embedlab.report.runs"):
        runs = find_runs([tmp_path])
    assert [r.path.name for r in runs] == ["done"]
    assert "stopped: skipped, metrics.json but no config.yaml" in caplog.text
    assert "done" not in caplog.text.replace(str(tmp_path), "")
