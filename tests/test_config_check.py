"""Configuration checks that fire before any data, model or teacher work, each naming the key at fault."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn
from transformers import AutoConfig, AutoModel

from embedlab.config.build import CONF_DIR
from embedlab.config.check import check_no_secrets, check_train_config, declared_dim
from embedlab.errors import ConfigError
from embedlab.models.lora import check_lora_targets
from embedlab.models.st_format import write_layout


def train_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["logger=csv", *overrides])


def teacher_npz(folder: Path, dim: int) -> Path:
    path = folder / "teacher.npz"
    np.savez(path, ids=np.array(["t:a", "t:b"]), embeddings=np.ones((2, dim), np.float32))
    return path


def test_the_default_config_passes() -> None:
    check_train_config(train_config())
    assert declared_dim(train_config().model, "model.path") == 384  # MiniLM's hidden size, read from config.json


@pytest.mark.slow
def test_the_leaf_demo_passes() -> None:
    """mpnet (768) teaches MiniLM + a 768 projection; its folder is reassembled from its packages if not cached."""
    check_train_config(train_config("experiment=leaf_demo"))
    with pytest.raises(ConfigError, match=r"set model\.projection_dim=768"):
        check_train_config(train_config("experiment=leaf_demo", "model.projection_dim=null"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eval.tasks=[scifcat]"], "unknown task 'scifcat'; known tasks: arguana, scifact, sick, stsb"),
        (["loss.infonce.temperature=0"], r"loss.infonce: temperature must be > 0, got 0"),
        (["loss.infonce.temperature=-0.05"], r"loss.infonce: temperature must be > 0"),
        (["loss.infonce.matryoshka_dims=[64,512]"], r"matryoshka dims \[512\] are outside 1..384"),
        (["model.projection_dim=16", "loss.infonce.matryoshka_dims=[8,32]"], r"matryoshka dims \[32\] .* 1..16"),
        (["data.kind=triples"], "data.kind='triples' is not one of text, pairs, scored"),
        (["logger.kind=tensorboard"], "logger.kind='tensorboard' is not one of wandb, csv"),
        (["trainer.precision=fp8"], "trainer.precision='fp8' is not one of auto, 32-true"),
        (["model.precision=fp16"], "model.precision='fp16' is not one of auto, fp32, bf16"),
        (["teacher=mpnet", "teacher.precision=int8"], "teacher.precision='int8' is not one of auto, fp32, bf16"),
        (["model.backend=tensorrt"], "model.backend='tensorrt' is not one of auto, torch, onnx, onnx-int8, openvino"),
        (["teacher=mpnet", "teacher.backend=int4"], "teacher.backend='int4' is not one of auto, torch, onnx"),
        (["nonfinite=ignore"], "nonfinite='ignore' is not one of stop, skip"),
        (["optim.implementation=fast"], r"unknown optim.implementation 'fast'; choose from auto, fused, foreach, for_"),
        (["loss=leaf", "data=leaf_texts"], r"loss.leaf needs \['teacher'\], .*configure teacher="),
        (["loss=kl_distill"], r"loss.kl_distill needs \['candidates', 'teacher_scores'\], which data.kind=pairs"),
        (["teacher=file"], r"teacher.file is required \(it has no value, '\?\?\?'\): set teacher.file=..."),
        (
            ["teacher.path=no-such-model"],
            "teacher.path: model .no-such-model. is neither.*preset: minilm, mistral7b_lora",
        ),
        (["mining_model=/no/such/folder"], "mining_model: model folder '/no/such/folder' does not exist"),
        (["seed=${oc.env:EMBEDLAB_UNSET_VARIABLE}"], "seed: .*Environment variable .EMBEDLAB_UNSET_VARIABLE."),
    ],
)
def test_each_bad_value_is_one_error_naming_its_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_train_config(train_config(*overrides))


def test_teacher_student_size_mismatch_without_a_projection(tmp_path: Path) -> None:
    npz = teacher_npz(tmp_path, 16)
    with pytest.raises(ConfigError, match=r"embeds in 16 dims, the student \(.*\) in 384.*projection_dim=16"):
        check_train_config(train_config("loss=leaf", "data=leaf_texts", "teacher=file", f"teacher.file={npz}"))
    check_train_config(
        train_config("loss=leaf", "data=leaf_texts", "teacher=file", f"teacher.file={npz}", "model.projection_dim=16")
    )
    jsonl = tmp_path / "teacher.jsonl"
    jsonl.write_text(json.dumps({"id": "t:a", "embedding": [0.0] * 24}) + "\n")
    with pytest.raises(ConfigError, match=r"teacher \(.*teacher.jsonl\) embeds in 24 dims"):
        check_train_config(train_config("loss=leaf", "data=leaf_texts", "teacher=file", f"teacher.file={jsonl}"))


def test_teacher_size_read_from_a_model_folder_without_loading_it(tmp_path: Path) -> None:
    folder = tmp_path / "teacher"  # a sentence-transformers folder with a Dense 32 → 24, and no weights at all
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    settings = {"pooling": "mean", "normalize": True, "max_length": 64, "prompts": {}}
    write_layout(folder, hidden_size=32, dense=nn.Linear(32, 24), **settings)
    assert declared_dim(str(folder), "teacher.path") == 24
    with pytest.raises(ConfigError, match=r"embeds in 24 dims.*projection_dim=24"):
        check_train_config(train_config("loss=leaf", "data=leaf_texts", f"teacher.path={folder}"))


def test_secrets_never_enter_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123")
    with pytest.raises(ConfigError, match=r"logger.tags\[0\] holds the value of \$WANDB_API_KEY"):
        check_train_config(train_config("logger=wandb", "logger.tags=[0123456789abcdef0123]"))
    check_train_config(train_config("logger=wandb"))  # the key in the environment, where W&B reads it: fine
    check_no_secrets({"a": ["short"]}, env={"HF_TOKEN": "short"})  # too short to be a secret worth matching
    with pytest.raises(ConfigError, match=r"a.b holds the value of \$HF_TOKEN"):
        check_no_secrets({"a": {"b": "prefix-hf_abcdefghijk"}}, env={"HF_TOKEN": "hf_abcdefghijk"})


def test_the_train_cli_checks_before_reading_data(tmp_path: Path) -> None:
    from embedlab.training import train as run

    cfg = train_config("loss=leaf", "data=leaf_texts", "data.sources=[{name: x, type: jsonl, path: /nope}]")
    with pytest.raises(ConfigError, match=r"loss\.leaf needs"):
        run(cfg, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("arch", ["mistral", "llama"])
def test_lora_targets_must_exist_in_the_model(arch: str) -> None:
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2}
    model = AutoModel.from_config(AutoConfig.for_model(arch, num_hidden_layers=2, vocab_size=128, **sizes))
    check_lora_targets(model, ["q_proj", "v_proj", "gate_proj"])
    check_lora_targets(model, ["layers.0.self_attn.q_proj"])  # a full dotted name works as well
    with pytest.raises(ConfigError, match=r"model.lora.target_modules: \['query', 'value'\] match no module.*q_proj"):
        check_lora_targets(model, ["q_proj", "query", "value"])  # BERT's names on a decoder
