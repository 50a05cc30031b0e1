"""LoRA on decoder encoders: only adapters train, adapters save alone and reload, merged export equals the adapter
model in sentence-transformers, gradient checkpointing changes nothing but memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from embedlab.data.collate import Collator
from embedlab.data.training import PairExample
from embedlab.errors import ConfigError
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig, parameter_groups
from embedlab.losses import build_loss
from embedlab.models import Encoder
from tests.tiny import QUIET, TEXTS
from tests.tiny_decoder import tiny_decoder_folder

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
# Merging folds B·A into W in float32: the merged model differs from the adapter model by rounding only.
MERGE_ATOL = 1e-5


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tiny_decoder_folder(tmp_path_factory.mktemp("lora") / "mistral", "mistral")


def _lora_encoder(folder: Path, **kw) -> Encoder:
    settings = {"bidirectional": True, "pooling": "mean", "lora": LORA, **kw}
    return Encoder.from_pretrained(str(folder), **settings)


def _perturb_adapters(enc: Encoder, seed: int = 0) -> None:
    """Fresh adapters are a no-op (B = 0); give B values so the tests see what an adapter does."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in enc.backbone.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def test_only_adapters_require_grad_and_reach_the_optimizer(folder: Path) -> None:
    enc = _lora_encoder(folder, projection_dim=8)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("projection.") for n in trainable)
    assert any(n.startswith("projection.") for n in trainable)  # a new head still trains beside the adapters
    groups = parameter_groups(enc, OptimConfig())
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for p in enc.parameters() if p.requires_grad}
    np.testing.assert_array_equal(  # B = 0 at the start: adapters do not change the model before training
        enc.encode(TEXTS[:3], head=False),
        Encoder.from_pretrained(str(folder), bidirectional=True).encode(TEXTS[:3], head=False),
    )


def test_training_moves_adapters_only(folder: Path) -> None:
    enc = _lora_encoder(folder)
    frozen = {n: p.detach().clone() for n, p in enc.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in enc.named_parameters() if p.requires_grad}
    pairs = [PairExample(f"q{i}", t, f"d{i}", TEXTS[-1 - i]) for i, t in enumerate(TEXTS[:8])]
    loader = torch.utils.data.DataLoader(list(enumerate(pairs)), batch_size=8, collate_fn=Collator.for_encoder(enc))
    module = EmbeddingModule(enc, build_loss({"infonce": {}}), OptimConfig(lr=1e-2, warmup_ratio=0.0))
    pl.Trainer(max_steps=2, logger=False, **QUIET).fit(module, loader)
    assert all(torch.equal(p, frozen[n]) for n, p in enc.named_parameters() if n in frozen)
    assert any(not torch.equal(p, adapters[n]) for n, p in enc.named_parameters() if n in adapters)


def test_adapter_saved_alone_and_reloaded(folder: Path, tmp_path: Path) -> None:
    enc = _lora_encoder(folder, instructions={"default": "find it"}, include_prompt=False)
    _perturb_adapters(enc)
    saved = enc.save_adapter(tmp_path / "adapter")
    files = {p.name for p in saved.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "embedlab_encoder.json"} <= files
    assert "model.safetensors" not in files  # the base weights are not copied
    back = Encoder.from_pretrained(str(saved))
    assert back.backbone.config.is_causal is False and back.include_prompt is False
    np.testing.assert_allclose(back.encode_queries(TEXTS), enc.encode_queries(TEXTS), atol=1e-6)
    assert back.fingerprint() == enc.fingerprint()


@pytest.mark.parametrize(("pooling", "append_eos"), [("mean", False), ("last_token", True)])
def test_merged_export_equals_adapter_model_in_sentence_transformers(folder, tmp_path, pooling, append_eos) -> None:
    from sentence_transformers import SentenceTransformer

    enc = _lora_encoder(
        folder, pooling=pooling, append_eos=append_eos, instructions={"default": "find it", "scifact": "check claim"}
    )
    _perturb_adapters(enc)
    expected, expected_q = enc.encode(TEXTS), enc.encode_queries(TEXTS, task="scifact")
    out = enc.save(tmp_path / "merged")
    assert enc.describe()["lora"]  # the trained encoder keeps its adapters: export merges a copy
    config = json.loads((out / "config.json").read_text())
    assert config["is_causal"] is False and "peft" not in json.dumps(config).lower()
    st = SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), expected, atol=MERGE_ATOL)
    np.testing.assert_allclose(st.encode(TEXTS, prompt_name="scifact"), expected_q, atol=MERGE_ATOL)
    plain = Encoder.from_pretrained(str(out))
    assert not plain.describe()["lora"] and plain.query_prompt_for("scifact") == enc.query_prompt_for("scifact")
    np.testing.assert_allclose(plain.encode(TEXTS), expected, atol=MERGE_ATOL)


def test_gradient_checkpointing_same_gradients(folder: Path) -> None:
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the same random A matrices both times
        enc = _lora_encoder(folder, gradient_checkpointing=checkpointing)
        _perturb_adapters(enc)
        enc.train()
        batch = enc.tokenize(TEXTS[:4])
        enc(batch["input_ids"], batch["attention_mask"]).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("lora", "match"),
    [
        ({**LORA, "target_modules": ["nope_proj"]}, "nope_proj"),
        ({**LORA, "rank": 4}, "rank"),
        ({**LORA, "r": 0}, "r >= 1"),
    ],
)
def test_bad_lora_settings_are_named(folder: Path, lora: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Encoder.from_pretrained(str(folder), lora=lora)


def test_save_adapter_without_lora_is_refused(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lora"):
        Encoder.from_pretrained(str(folder)).save_adapter(tmp_path / "a")
