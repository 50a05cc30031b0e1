"""The typed schemas (embedlab/config/schema.py): a wrong type or an unknown key fails when the config is composed,
naming its key; a preset without a knob gets the schema's default; and the composed configs are main's before the
schemas, plus only keys the schemas add with their defaults (what the code used when a key was absent)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from embedlab.config.build import CONF_DIR, compose, encoder_config
from embedlab.config.schema import (
    DATA_SCHEMAS,
    GROUP_SCHEMAS,
    LoggerConfig,
    MiningConfig,
    TeacherConfig,
    TrainConfig,
    TrainerConfig,
)
from embedlab.data.training import TextSource
from embedlab.losses import LOSSES, InfoNCE
from embedlab.losses.settings import InfoNCESettings, LeafSettings
from embedlab.models import EncoderConfig

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "composed_configs.json").read_text())
# Nodes whose schema may add keys the YAML did not write (each added key must hold the schema's default).
SCHEMAS = {
    **GROUP_SCHEMAS,
    **{k: OmegaConf.structured(TrainConfig)[k] for k in ("optim", "eval", "step", "projection", "checkpoint")},
}


def schemas_of(main: dict) -> dict:
    """Each schema-typed node of a composed train config (by its dotted key): the groups above, the data by its
    kind, each loss by its name."""
    return {**SCHEMAS, "data": DATA_SCHEMAS[main["data"]["kind"]]} | {
        f"loss.{name}": LOSSES[name].settings for name in main["loss"]
    }


def added_keys(before, after, path: str = "") -> list[str]:
    """Keys of `after` missing from `before` (inside lists of mappings too); any value `before` has that `after`
    lacks or changes fails."""
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [k for i, (b, a) in enumerate(zip(before, after, strict=True)) for k in added_keys(b, a, f"{path}{i}.")]
    if not (isinstance(before, dict) and isinstance(after, dict)):
        assert after == before, f"{path.rstrip('.')}: {before!r} on main, now {after!r}"
        return []
    added = []
    for key, value in before.items():
        assert key in after, f"{path}{key} was removed"
        added += added_keys(value, after[key], f"{path}{key}.")
    return added + [f"{path}{key}" for key in after if key not in before]


@pytest.mark.parametrize("name", sorted(FIXTURE["sets"]))
def test_composed_train_config_is_mains_plus_schema_defaults(name: str) -> None:
    main = FIXTURE["resolved"][name]
    now = OmegaConf.to_container(compose("train", FIXTURE["sets"][name]), resolve=True)
    schemas = schemas_of(main)
    for key in added_keys(main, now):
        node = max((n for n in schemas if key.startswith(f"{n}.")), key=len, default=None)
        assert node is not None, f"{key} is new and no schema states it"
        # main's node with the schema's defaults filled in (list entries too): what the added key must hold
        filled = OmegaConf.merge(OmegaConf.structured(schemas[node]), OmegaConf.select(OmegaConf.create(main), node))
        default = OmegaConf.select(filled, key.removeprefix(f"{node}."))
        assert OmegaConf.select(OmegaConf.create(now), key) == default, f"{key} added with a non-default value"


@pytest.mark.parametrize("job", ["eval", "mine", "score", "soup", "reranker"])
def test_other_jobs_compose_as_on_main_plus_schema_defaults(job: str) -> None:
    main = FIXTURE["resolved"][f"job:{job}"]
    now = OmegaConf.to_container(compose(job, []), resolve=False)
    for key in added_keys(main, now):
        node = key.partition(".")[0]
        assert node in ("model", "teacher_scores"), f"{key} is new and no schema states it"
        filled = OmegaConf.merge(OmegaConf.structured(SCHEMAS[node]), main[node])
        assert OmegaConf.select(OmegaConf.create(now), key) == OmegaConf.select(filled, key.partition(".")[2]), key


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
        "loss.infonce.temperature=abc",
        "loss.infonce.hn_mixing.num=many",
        "loss.infonce.symmetric=maybe",
        "data.batch_size=abc",
        "data.num_negatives=two",
        "data.drop_last=maybe",
    ],
)
def test_a_wrong_type_fails_at_compose_naming_the_key(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException) as e:
        compose("train", [override])
    message = f"{e.value} {e.value.__cause__}"
    assert key in message and "Value" in message, message


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["loss=focal_infonce", "loss.focal_infonce.temperature=abc"], "loss.focal_infonce.temperature"),
        (["loss=[leaf,kl_distill]", "loss.kl_distill.teacher_temperature=hot"], "loss.kl_distill.teacher_temperature"),
        (["loss=[leaf,margin_mse]", "loss.leaf.normalize=maybe"], "loss.leaf.normalize"),
        (["data=leaf_texts", "data.heldout=some"], "data.heldout"),
        (["data=leaf_texts", "data.sources.1.limit=all"], "data.sources.1.limit"),
        (["data=scored", "data.num_candidates=eight"], "data.num_candidates"),
        (["data=mixture_offline", "data.max_length=long"], "data.max_length"),
        (["teacher_scores=mpnet", "teacher_scores.teachers.0.weight=heavy"], "teacher_scores.teachers.0.weight"),
        (["teacher_scores=reranker", "teacher_scores.teachers.0.trust_remote_code=ok"], "trust_remote_code"),
    ],
)
def test_each_data_kind_and_loss_is_typed(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigCompositionException) as e:
        compose("train", overrides)
    message = f"{e.value} {e.value.__cause__}"
    assert key in message and "Value" in message, message


BAD_RECIPE = {  # a recipe's own keys, as written in YAML: a misspelt or misplaced knob fails at compose
    "loss: {infonce: {temprature: 0.1}}": "temprature",
    "loss: {leaf: {hn_mixing: {enabled: true}}}": "hn_mixing",
    "data: {batchsize: 8}": "batchsize",
    "data: {num_candidates: 4}": "num_candidates",  # a scored knob on pair data
    "teacher_scores: {teachers: [{kind: bi_encoder, model: mpnet, weigth: 2}]}": "weigth",
}


@pytest.mark.parametrize("body", sorted(BAD_RECIPE))
def test_an_unknown_key_in_a_recipe_fails_at_compose_naming_it(body: str, tmp_path: Path) -> None:
    conf = shutil.copytree(CONF_DIR, tmp_path / "conf")
    (conf / "experiment" / "bad.yaml").write_text(f"# @package _global_\n{body}\n")
    loss = "loss=[leaf,infonce]" if "leaf" in body else "loss=infonce"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        hydra_compose("train", [loss])  # the copy composes as it is
        with pytest.raises(ConfigCompositionException) as e:
            hydra_compose("train", [loss, "experiment=bad"])
    message = f"{e.value} {e.value.__cause__}"
    assert BAD_RECIPE[body] in message and "not in" in message, message


def test_loss_entries_are_packaged_under_their_names_with_their_schema() -> None:
    cfg = compose("train", ["loss=[leaf,infonce,focal_infonce]", "loss.focal_infonce.gamma=2"])
    assert list(cfg.loss) == ["leaf", "infonce", "focal_infonce"]
    assert OmegaConf.to_object(cfg.loss.leaf) == LeafSettings()
    assert OmegaConf.to_object(cfg.loss.infonce) == InfoNCESettings()
    # focal_infonce: infonce@_here_ then its own gamma, every other knob infonce's
    assert OmegaConf.to_object(cfg.loss.focal_infonce) == InfoNCESettings(gamma=2.0)
    assert compose("train", ["loss=focal_infonce"]).loss.focal_infonce.gamma == 1.0
    assert "temperature" not in (CONF_DIR / "loss" / "infonce.yaml").read_text()  # written once, in the schema
    assert InfoNCE().temperature == InfoNCESettings.temperature  # the class's own default is the schema's
    for recipe in ("lg_anna", "mixture_offline"):  # recipes that combine losses
        combined = compose("train", [f"experiment={recipe}"]).loss
        assert all(OmegaConf.get_type(combined[n]) is LOSSES[n].settings for n in combined), recipe


def test_each_data_kind_has_its_schema() -> None:
    for preset, kind in [("scifact_pairs", "pairs"), ("arguana_genq", "pairs"), ("leaf_texts", "text"),
                         ("scored", "scored"), ("mixture_offline", "mixture")]:  # fmt: skip
        data = compose("train", [f"data={preset}"]).data
        assert data.kind == kind and OmegaConf.get_type(data) is DATA_SCHEMAS[kind], preset
    texts = compose("train", ["data=leaf_texts"]).data
    assert OmegaConf.to_object(texts.sources[0]) == TextSource("scifact_train", "beir_queries", "scifact")
    assert OmegaConf.missing_keys(compose("train", ["data=scored"])) == {"data.path"}


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
