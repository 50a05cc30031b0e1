"""W&B labels of a Hydra multirun job: group = sweep directory, varied knobs as config and tags (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from embedlab.training.labels import SweepLabels, current_labels, job_labels, swept_knobs

SWEEP = ["loss=focal_infonce", "loss.focal_infonce.gamma=1,2", "seed=range(3)", "logger=wandb", "+tag=choice(a,b)"]
JOB = ["loss=focal_infonce", "loss.focal_infonce.gamma=2", "seed=1", "logger=wandb", "+tag=b"]


def test_swept_knobs_are_the_overrides_given_several_values() -> None:
    assert swept_knobs(SWEEP, JOB) == {"loss.focal_infonce.gamma": "2", "seed": "1", "tag": "b"}
    assert swept_knobs(["seed=0", "x=1"], ["seed=0", "x=1"]) == {}


def test_job_labels_read_the_sweep_manifest(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "focal"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": SWEEP}}, "seed": 0}))
    labels = job_labels(True, sweep, JOB)
    assert labels.group == str(sweep)
    assert labels.tags == ["loss.focal_infonce.gamma=2", "seed=1", "tag=b"]
    # a single run has no group; a sweeper that writes no manifest: every non-Hydra override is a knob
    assert job_labels(False, sweep, JOB) == SweepLabels()
    other = job_labels(True, tmp_path / "elsewhere", ["seed=1", "hydra.job.num=3", "+x=" + "y" * 80])
    assert other.knobs == {"seed": "1", "+x": "y" * 80} and len(other.tags[1]) == 64
    assert current_labels() == SweepLabels()  # not inside a Hydra job


@pytest.mark.slow  # imports the training stack and starts wandb's offline service (~10 s)
def test_offline_wandb_run_carries_group_tags_and_knobs(tmp_path: Path, monkeypatch) -> None:
    from embedlab.training.loggers import make_logger

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = OmegaConf.create(
        {"seed": 1, "logger": {"kind": "wandb", "mode": "offline", "project": "p", "group": None, "tags": ["mine"]}}
    )
    labels = SweepLabels("multirun/focal", {"loss.focal_infonce.gamma": "2", "seed": "1"})
    logger = make_logger(cfg, tmp_path, labels)
    run = logger.experiment  # starts the offline run: files only, no network
    try:
        assert run.group == "multirun/focal"
        assert list(run.tags) == ["mine", "loss.focal_infonce.gamma=2", "seed=1"]
        assert dict(run.config["sweep"]) == {"loss.focal_infonce.gamma": "2", "seed": "1"}
        assert run.config["seed"] == 1
    finally:
        run.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    cfg.logger.group = "explicit"  # a group given in the config wins
    assert make_logger(cfg, tmp_path, labels)._wandb_init["group"] == "explicit"


def test_current_labels_inside_a_multirun_job(tmp_path: Path) -> None:
    """The running job's Hydra config, as the basic launcher sets it for each job of `-m seed=0,1 loss=...`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from embedlab.config.build import CONF_DIR

    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"overrides": {"task": ["seed=0,1", "loss=focal_infonce"]}}})
    )
    job = ["seed=1", "loss=focal_infonce", f"hydra.sweep.dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        multirun = compose("train", overrides=[*job, "hydra.mode=MULTIRUN"], return_hydra_config=True)
        single = compose("train", overrides=[*job, "hydra.mode=RUN"], return_hydra_config=True)
    try:
        HydraConfig.instance().set_config(multirun)
        assert current_labels() == SweepLabels(str(tmp_path), {"seed": "1"})
        HydraConfig.instance().set_config(single)
        assert current_labels() == SweepLabels()
    finally:
        HydraConfig.instance().cfg = None
