"""The paper recipes in conf/experiment/: each composes, says what it sets, and the derived recipes equal their base
plus the stated overrides (the commands in experiments/*.sh rely on that)."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from embedlab.config.build import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
KNOB = re.compile(r"^\s*[\w.]+: \S")  # a key with a value (not a parent mapping)


def _compose(*overrides: str) -> dict:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=list(overrides)), resolve=False)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_recipe_composes_and_comments_every_knob(name: str) -> None:
    assert _compose(f"experiment={name}")["model"]["path"]
    lines = (CONF_DIR / "experiment" / f"{name}.yaml").read_text(encoding="utf-8").splitlines()
    bare = [line for line in lines if KNOB.match(line) and " # " not in line]
    assert not bare, f"{name}.yaml: knobs without a one-line comment: {bare}"


def test_kalm_v2_is_the_focal_sweep_settings() -> None:
    sweep = ["logger=csv", "export=false"]
    for arm in ([], ["loss.infonce.hn_mixing.enabled=true"], ["loss=focal_infonce", "loss.focal_infonce.gamma=1"]):
        assert _compose("experiment=kalm_v2", *arm) == _compose(*sweep, *arm)


def test_kalm_v2_genq_only_swaps_the_data_and_the_budget() -> None:
    base, genq = _compose("experiment=kalm_v2"), _compose("experiment=kalm_v2_genq")
    assert genq["data"]["path"] == "arguana/generated-queries/train.jsonl.gz" and genq["data"]["max_length"] == 128
    assert genq["trainer"]["max_steps"] == 40 and genq["eval"]["tasks"] == ["scifact"] and genq["eval"]["max_docs"]
    genq["trainer"]["max_steps"] = base["trainer"]["max_steps"]
    genq["eval"]["max_docs"] = base["eval"]["max_docs"]
    assert {k: v for k, v in genq.items() if k != "data"} == {k: v for k, v in base.items() if k != "data"}


def test_leaf_grid_is_leaf_demo_over_the_grid() -> None:
    grid = ["export=false", "eval.dims=[96,192,384]", "eval.precisions=[float32,int8,binary]"]
    assert _compose("experiment=leaf_grid") == _compose("experiment=leaf_demo", *grid)


@pytest.mark.parametrize("name", [*EXPERIMENTS, None])
def test_every_precision_knob_defaults_to_auto(name: str | None) -> None:
    """Shipped configs and recipes leave precision to the hardware (embedlab/precision.py)."""
    cfg = _compose(*([f"experiment={name}"] if name else []), "teacher=mpnet", "teacher_scores=mpnet")
    knobs = {
        "model": cfg["model"]["precision"],
        "teacher": cfg["teacher"]["precision"],
        "trainer": cfg["trainer"]["precision"],
        **{f"teacher_scores.{i}": t["precision"] for i, t in enumerate(cfg["teacher_scores"]["teachers"])},
    }
    assert set(knobs.values()) == {"auto"}, knobs
