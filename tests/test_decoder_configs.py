"""The decoder model configs, each run on a tiny random model of its own architecture (the hub ids need a network,
the packaged GGUF decoders are too slow for unit tests): every knob is accepted and does what it says; and every
model preset writes only what differs from EncoderConfig's defaults (embedlab/config/schema.py)."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from embedlab.config.build import CONF_DIR, compose, encoder_config
from embedlab.models import Encoder, EncoderConfig
from tests.tiny import TEXTS
from tests.tiny_decoder import tiny_decoder_folder

CONFIGS = {  # config -> the architecture of its real backbone
    "qwen2_bidir": "qwen2",
    "mistral7b_lora": "mistral",
    "smollm2_bidir": "llama",
    "qwen25_05b_bidir": "qwen2",
}


PRESETS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_the_schema_defaults_with_its_own_keys(name: str) -> None:
    """Each preset writes only what differs from EncoderConfig: composed, it is EncoderConfig's defaults overridden
    by exactly its own keys, and none of its keys restates a default."""
    written = yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text())  # as written, without OmegaConf
    assert written.pop("defaults") == ["schema", "_self_"]
    defaults = {f.name: f.default for f in fields(EncoderConfig) if f.name != "path"}
    restated = sorted(k for k, v in written.items() if k in defaults and v == defaults[k])
    assert not restated, f"conf/model/{name}.yaml restates the schema's defaults: {restated}"
    composed = OmegaConf.to_container(compose("train", [f"model={name}"]).model, resolve=True)
    assert composed == {**defaults, **written}
    assert asdict(encoder_config(name)) == composed  # loaded by name (teacher.path=mpnet), the same config


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_on_a_tiny_model_of_its_architecture(name: str, tmp_path: Path) -> None:
    node = compose("train", [f"model={name}"]).model
    cfg = encoder_config(OmegaConf.merge(node, {"path": str(tiny_decoder_folder(tmp_path / "m", CONFIGS[name]))}))
    enc = Encoder.from_config(cfg)
    assert enc.backbone.config.is_causal is (not cfg.bidirectional)
    assert enc.pooling == cfg.pooling and enc.query_prompt.startswith("Instruct: ")
    for task, text in (cfg.instructions or {}).items():
        assert enc.query_prompt_for(None if task == "default" else task) == f"Instruct: {text}\nQuery: "
    assert enc.describe()["lora"] is (cfg.lora is not None)
    if cfg.lora is not None:
        assert {n for n, p in enc.named_parameters() if p.requires_grad} and all(
            "lora_" in n for n, p in enc.named_parameters() if p.requires_grad
        )
    if cfg.append_eos:
        assert enc.tokenizer("x")["input_ids"][-1] == enc.tokenizer.eos_token_id
    dtype = torch.bfloat16 if cfg.dtype == "bf16" else torch.float32
    assert next(p for n, p in enc.named_parameters() if "embed" in n).dtype == dtype
    out = enc.encode(TEXTS[:4])
    assert out.shape == (4, 32) and abs(float((out**2).sum(1).mean()) - 1.0) < 1e-3


def test_packaged_names_are_the_hub_ids_hub_py_knows() -> None:
    from embedlab.hub import PACKAGED

    for name in ("smollm2_bidir", "qwen25_05b_bidir"):
        assert encoder_config(name).path in PACKAGED
