"""The typed schemas (embedlab/config/schema.py): a wrong type fails when the config is composed, naming its key; a
preset without a knob gets the schema's default; and the composed configs are main's before the schemas, plus only
keys the schemas add with their defaults (what the code used when a key was absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from embedlab.config.build import compose, encoder_config
from embedlab.config.schema import LoggerConfig, MiningConfig, TeacherConfig, TrainConfig, TrainerConfig
from embedlab.models import EncoderConfig

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "composed_configs.json").read_text())
# Nodes whose schema may add keys the YAML did not write (each added key must hold the schema's default).
SCHEMAS = {
    "model": OmegaConf.structured(EncoderConfig),
    "teacher": OmegaConf.structured(TeacherConfig),
    "trainer": OmegaConf.structured(TrainerConfig),
    "mining": OmegaConf.structured(MiningConfig),
    "logger": OmegaConf.structured(LoggerConfig),
    **{k: OmegaConf.structured(TrainConfig)[k] for k in ("optim", "eval", "step", "projection", "checkpoint")},
}


def added_keys(before: dict, after: dict, path: str = "") -> list[str]:
    """Keys of `after` missing from `before`; any value `before` has that `after` lacks or changes fails."""
    added = []
    for key, value in before.items():
        assert key in after, f"{path}{key} was removed"
        if isinstance(value, dict) and isinstance(after[key], dict):
            added += added_keys(value, after[key], f"{path}{key}.")
        else:
            assert after[key] == value, f"{path}{key}: {value!r} on main, now {after[key]!r}"
    return added + [f"{path}{key}" for key in after if key not in before]


@pytest.mark.parametrize("name", sorted(FIXTURE["sets"]))
def test_composed_train_config_is_mains_plus_schema_defaults(name: str) -> None:
    now = OmegaConf.to_container(compose("train", FIXTURE["sets"][name]), resolve=True)
    for key in added_keys(FIXTURE["resolved"][name], now):
        node, _, leaf = key.partition(".")
        assert node in SCHEMAS and leaf in SCHEMAS[node], f"{key} is new and no schema states it"
        default = OmegaConf.to_container(SCHEMAS[node], resolve=False)[leaf]
        assert OmegaConf.select(OmegaConf.create(now), key) == default, f"{key} added with a non-default value"


@pytest.mark.parametrize("job", ["eval", "mine", "score", "soup", "reranker"])
def test_other_jobs_compose_as_on_main_plus_model_defaults(job: str) -> None:
    now = OmegaConf.to_container(compose(job, []), resolve=False)
    for key in added_keys(FIXTURE["resolved"][f"job:{job}"], now):
        node, _, leaf = key.partition(".")
        assert node == "model" and now["model"][leaf] == OmegaConf.to_container(SCHEMAS["model"])[leaf], key


@pytest.mark.parametrize(
    "override",
    [
        "trainer.max_steps=abc",
        "model.max_length=abc",
        "optim.lr=fast",
        "eval.every_n_steps=often",
        "checkpoint.keep=two",
        "teacher.batch_size=big",
        "step.gather=maybe",
        "seed=one",
        "mining.top_k=many",
        "mining.enabled=maybe",
    ],
)
def test_a_wrong_type_fails_at_compose_naming_the_key(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException) as e:
        compose("train", [override])
    message = f"{e.value} {e.value.__cause__}"
    assert key in message and "Value" in message, message


def test_a_preset_without_a_knob_gets_the_schema_default() -> None:
    cfg = compose("train", ["model=minilm", "teacher=mpnet", "trainer=ddp"])
    assert "dtype" not in (Path(__file__).parents[1] / "conf/model/minilm.yaml").read_text()
    assert cfg.model.dtype == EncoderConfig.dtype and cfg.model.lora is None and cfg.model.append_eos is False
    assert cfg.teacher.batch_size == TeacherConfig.batch_size and cfg.teacher.cache is True
    assert cfg.trainer.max_epochs == TrainerConfig.max_epochs and cfg.trainer.strategy == "ddp"
    assert encoder_config("minilm") == EncoderConfig(path="sentence-transformers/all-MiniLM-L6-v2")
    mining = compose("train", ["mining=relative", "logger=csv"])
    assert "top_k" not in (Path(__file__).parents[1] / "conf/mining/window.yaml").read_text()
    assert mining.mining.top_k == MiningConfig.top_k and mining.mining.margin == "relative"
    assert mining.logger.kind == "csv" and mining.logger.project == LoggerConfig.project


def test_teacher_file_still_requires_its_file() -> None:
    assert OmegaConf.missing_keys(compose("train", ["teacher=file"])) == {"teacher.file"}
