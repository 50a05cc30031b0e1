"""The paper recipes in conf/experiment/ and the pipelines in conf/pipeline/: each composes, says what it sets, and
the derived recipes equal their base plus the stated overrides (the commands in experiments/*.sh rely on that)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from embedlab.config.build import CONF_DIR
from embedlab.training.pipeline import load_spec, run_pipeline

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
    assert genq["trainer"]["max_steps"] == 80 and genq["eval"]["tasks"] == ["scifact"] and genq["eval"]["max_docs"]
    genq["trainer"]["max_steps"] = base["trainer"]["max_steps"]
    genq["eval"]["max_docs"] = base["eval"]["max_docs"]
    assert {k: v for k, v in genq.items() if k != "data"} == {k: v for k, v in base.items() if k != "data"}


def test_kalm_v2_sweep_is_kalm_v2_with_mined_negatives_and_gradcache() -> None:
    """The sweep recipe (experiments/kalm_v2_sweep.sh) is kalm_v2 plus the overrides its header states."""
    stated = [
        "mining=window",
        "data.split=fit",
        "data.batch_size=256",
        "data.max_length=128",
        "data.num_negatives=7",
        "mining.num_negatives=7",
        "mining.min_rank=50",
        "mining.max_rank=100",
        "step.chunk_size=32",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
    ]
    assert _compose("experiment=kalm_v2_sweep") == _compose("experiment=kalm_v2", *stated)


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


def test_leaf_pool_is_leaf_demo_on_the_pool_at_a_fixed_budget_and_the_dev_chosen_lr() -> None:
    budget = ["data=leaf_texts_pool", "trainer.max_steps=320", "trainer.max_epochs=-1"]
    assert _compose("experiment=leaf_pool") == _compose("experiment=leaf_demo", *budget)
    assert _compose("experiment=leaf_demo")["optim"]["lr"] == 1e-4  # leaf_lr_dev.sh's choice on dev, not test


def test_lg_anna_lists_is_the_soft_label_sweep_on_k4_lists() -> None:
    """experiments/lg_anna_lists.sh's arms are overrides of this recipe: K = 4 (5-candidate soft labels), fit split."""
    flags = ["mining=adaptive", "teacher_scores=mpnet", "loss=[infonce,kl_distill]", "logger=csv", "export=false"]
    data = ["data.num_negatives=4", "data.split=fit", "step.chunk_size=32", "eval.before_training=false"]
    assert _compose("experiment=lg_anna_lists") == _compose(*flags, *data)


def test_lg_anna_decoder_is_lg_anna_on_qwen_with_k4() -> None:
    qwen = ["model=qwen25_05b_bidir", "data.num_negatives=4", "data.split=fit"]
    assert _compose("experiment=lg_anna_decoder") == _compose("experiment=lg_anna", *qwen)


PIPELINES = sorted(p.stem for p in (CONF_DIR / "pipeline").glob("*.yaml"))


def _stage_configs(name: str, out: Path) -> dict[str, DictConfig]:
    """Every run of a shipped pipeline, composed as it would run (run directory -> config); nothing is trained."""
    configs = {}

    def record(cli: str, cfg: DictConfig, run_dir: Path) -> None:
        configs[str(run_dir.relative_to(out))] = cfg
        (run_dir / "model").mkdir(parents=True)
        (run_dir / "manifest.json").write_text("{}")  # the done mark, written last

    run_pipeline(load_spec(name, [f"out={out}", "data_root=/data"]), runner=record)
    return configs


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_composes_every_run(name: str, tmp_path: Path) -> None:
    assert _stage_configs(name, tmp_path)


def test_leaf_teacher_distils_the_fine_tuned_teacher_on_unlabeled_fit_texts(tmp_path: Path) -> None:
    runs = _stage_configs("leaf_teacher", tmp_path)
    teacher = OmegaConf.to_container(runs.pop("teacher"), resolve=True)
    # the teacher's recipe is the MiniLM baseline's, as experiments/leaf_teacher.sh runs it, but for the model, the
    # evaluation (dev vs test + STSb) and the export (the teacher's model is the next stage's input)
    script = ["eval.tasks=[scifact,stsb]", "eval.before_training=false", "export=false"]
    baseline = OmegaConf.to_container(
        OmegaConf.create(_compose("logger=csv", "data.root=/data", "data.split=fit", *script)), resolve=True
    )
    assert teacher["model"]["path"].endswith("all-mpnet-base-v2") and teacher["eval"]["split"] == "dev"
    assert baseline["model"]["path"].endswith("all-MiniLM-L6-v2") and teacher["export"]
    differ = ("model", "eval", "export")
    assert {k: v for k, v in teacher.items() if k not in differ} == {
        k: v for k, v in baseline.items() if k not in differ
    }
    assert len(runs) == 7
    for run, cfg in runs.items():
        assert cfg.teacher.path == str(tmp_path / "teacher" / "model"), run  # the fine-tuned teacher, not mpnet
        assert cfg.model.path.endswith("all-MiniLM-L6-v2") and cfg.model.projection_dim == 768
        assert cfg.data.kind == "text" and cfg.data.sources[0].split == "fit"  # no SciFact dev or test claim
        assert cfg.eval.split is None and list(cfg.eval.tasks) == ["scifact", "stsb"] and cfg.eval.asymmetric
    assert [runs[f"leaf/{i}"].seed for i in range(7)] == [0, 1, 2, 0, 0, 0, 0]
    limits = [[s.limit for s in runs[f"leaf/{i}"].data.sources] for i in range(7)]
    assert limits[0] == [None] * 4 and limits[3] == [None, 5000, 0, 0] and limits[6] == [None, None, None, 0]
