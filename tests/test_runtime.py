"""Inference backends for frozen encoders (embedlab/models/runtime.py): same vectors as torch, exported once,
torch for trainable encoders and for backbones that do not export, the knob checked."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel
from transformers.modeling_outputs import BaseModelOutput

from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.models import Encoder, runtime
from tests.tiny import TEXTS, tiny_bert, tiny_encoder

pytestmark = pytest.mark.skipif(not runtime.installed("onnx"), reason="onnxruntime and onnx are not installed")
RUNTIMES = [b for b in ("onnx", "openvino") if runtime.installed(b)]
TOLERANCE = 1e-4  # max |Δ| of normalised embeddings


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh export cache per test, auto unpinned (tests/conftest.py pins torch), fp32 (conftest pins it too)."""
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(runtime.OVERRIDE_ENV, raising=False)
    runtime._say.cache_clear()
    return tmp_path / "cache"


def frozen(tok, backend: str, **kwargs) -> Encoder:
    return tiny_encoder(tok, backend=backend, **kwargs).requires_grad_(False)


def exports(cache: Path) -> list[Path]:
    return sorted((cache / "runtime").glob("*/onnx/model.onnx"))


@pytest.mark.parametrize("backend", RUNTIMES)
def test_a_runtime_gives_torchs_vectors(tok, backend: str, tmp_path: Path) -> None:
    """Projection head, prompt left out of pooling, features + apply_head through the cache: all within 1e-4.
    On a CPU with AVX512-BF16 (this suite's machine) OpenVINO would compute in bf16 (~2e-3 off) without its f32 hint.
    """
    ref = frozen(tok, "torch", include_prompt=False)
    enc = frozen(tok, backend, include_prompt=False)
    assert runtime.backend_name(enc) == backend  # it runs, else the comparison would be torch against torch
    want = ref.encode(TEXTS, prompt="query: ", batch_size=5)
    assert np.abs(enc.encode(TEXTS, prompt="query: ", batch_size=5) - want).max() <= TOLERANCE
    feats = enc.encode(TEXTS, head=False, batch_size=5)
    assert np.abs(feats - ref.encode(TEXTS, head=False, batch_size=5)).max() <= TOLERANCE
    enc.query_prompt = ref.query_prompt = "query: "
    cached = encode_cached(enc, TEXTS, kind="query", cache=EmbeddingCache(tmp_path / "emb"), batch_size=4)
    assert np.abs(cached - want).max() <= TOLERANCE


def test_backend_is_in_the_fingerprint_and_description(tok) -> None:
    ref, enc = frozen(tok, "torch"), frozen(tok, "onnx")
    assert enc.describe()["backend"] == "onnx" and ref.describe()["backend"] == "torch"
    assert enc.fingerprint() != ref.fingerprint()
    assert enc.fingerprint(head=False) != ref.fingerprint(head=False)


def test_the_export_is_cached_and_a_weight_change_exports_again(tok, private_cache, monkeypatch) -> None:
    first = frozen(tok, "onnx")
    want = first.encode(TEXTS)
    assert len(exports(private_cache)) == 1

    def no_export(*args, **kwargs):
        raise AssertionError("exported a second time")

    real_export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = frozen(tok, "onnx")  # a new encoder, the same weights: loads the cached graph
    assert runtime.backend_name(again) == "onnx"
    np.testing.assert_array_equal(again.encode(TEXTS), want)
    monkeypatch.setattr(torch.onnx, "export", real_export)
    with torch.no_grad():
        again.backbone.embeddings.word_embeddings.weight.mul_(2.0)  # in place, as a soup or load_state_dict would
    assert runtime.backend_name(again) == "onnx"
    assert len(exports(private_cache)) == 2
    ref = tiny_encoder(tok, backend="torch")
    ref.load_state_dict(again.state_dict())
    assert np.abs(again.encode(TEXTS) - ref.encode(TEXTS)).max() <= TOLERANCE


def test_a_backbone_with_dropout_exports_in_eval_mode_and_keeps_its_modes(tok) -> None:
    """The exporter restores the train/eval mode of the module it is given: a fresh wrapper is in train mode, so the
    backbone (whose dropout is live in train mode) must come back in the modes it had, and export without dropout."""
    config = AutoConfig.for_model(
        "bert", num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=len(tok)
    )
    torch.manual_seed(0)
    enc = Encoder(AutoModel.from_config(config).eval(), tok, max_length=64, backend="onnx").requires_grad_(False)
    assert config.hidden_dropout_prob > 0 and enc.training and not enc.backbone.training
    assert runtime.backend_name(enc) == "onnx"
    assert enc.training and not any(m.training for m in enc.backbone.modules())
    ref = Encoder(enc.backbone, tok, max_length=64, backend="torch")
    assert np.abs(enc.encode(TEXTS) - ref.encode(TEXTS)).max() <= TOLERANCE


def test_onnx_int8_is_an_opt_in_that_moves_the_vectors(tok) -> None:
    ref = frozen(tok, "torch").encode(TEXTS)
    int8 = frozen(tok, "onnx-int8")
    assert runtime.backend_name(int8) == "onnx-int8"
    got = int8.encode(TEXTS)
    cosines = (got * ref).sum(1)
    assert cosines.min() > 0.95 and np.abs(got - ref).max() > TOLERANCE  # close, but not torch's vectors
    assert runtime.backend_name(frozen(tok, "auto")) == "onnx"  # auto never picks int8


class Histc(nn.Module):
    """A BERT whose output passes through histc, which has no ONNX export."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert, self.config = bert, bert.config

    def forward(self, input_ids, attention_mask, **extra):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return BaseModelOutput(last_hidden_state=hidden + 0.0 * torch.histc(hidden, bins=4).sum())


class CountsTokens(Histc):
    """A Python number read from a tensor: the tracer records it as a constant, right for the export sample only."""

    def forward(self, input_ids, attention_mask, **extra):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return BaseModelOutput(last_hidden_state=hidden * float(attention_mask.sum()))


@pytest.mark.parametrize(("wrapper", "reason"), [(Histc, "histc"), (CountsTokens, "differs from torch")])
def test_a_backbone_that_does_not_export_runs_on_torch_with_one_log_line(tok, caplog, wrapper, reason) -> None:
    enc = Encoder(wrapper(tiny_bert(tok)), tok, max_length=64, name="odd", backend="onnx").requires_grad_(False)
    ref = Encoder(wrapper(tiny_bert(tok)), tok, max_length=64, name="odd", backend="torch").requires_grad_(False)
    with caplog.at_level(logging.WARNING, logger="embedlab.models.runtime"):
        got = enc.encode(TEXTS)
        enc.fingerprint()
        enc.encode(TEXTS[:3])
    lines = [r.getMessage() for r in caplog.records if r.name == "embedlab.models.runtime"]
    assert len(lines) == 1 and reason in lines[0] and "torch" in lines[0], lines
    assert runtime.backend_name(enc) == "torch"
    np.testing.assert_array_equal(got, ref.encode(TEXTS))


def test_a_trainable_encoder_never_uses_a_runtime(tok, caplog, private_cache) -> None:
    student = tiny_encoder(tok, backend="onnx")  # as the train CLI builds the student: trainable
    with caplog.at_level(logging.WARNING, logger="embedlab.models.runtime"):
        assert runtime.backend_name(student) == "torch"
    assert "trainable" in caplog.text and not exports(private_cache)
    student.backbone.requires_grad_(False)  # projection.freeze_backbone: the head still trains
    assert runtime.backend_name(student) == "torch"
    assert runtime.backend_name(student.requires_grad_(False)) == "onnx"  # frozen as a whole: now it may


def test_build_encoder_freezes_only_when_asked(tok, tmp_path: Path) -> None:
    from embedlab.config.build import build_encoder

    node = {"path": str(tiny_encoder(tok).save(tmp_path / "model")), "backend": "onnx"}
    assert runtime.backend_name(build_encoder(node)) == "torch"  # the student of embedlab-train
    assert runtime.backend_name(build_encoder(node, frozen=True)) == "onnx"  # a teacher, an evaluated model


def test_auto_picks_the_runtime_only_for_fp32(tok, monkeypatch) -> None:
    assert runtime.backend_name(frozen(tok, "auto")) == runtime.AUTO_ORDER[0]
    assert runtime.backend_name(frozen(tok, "auto", precision="bf16")) == "torch"  # torch's autocast: measured
    monkeypatch.setenv(runtime.OVERRIDE_ENV, "torch")
    assert runtime.backend_name(frozen(tok, "auto")) == "torch"
    monkeypatch.setenv(runtime.OVERRIDE_ENV, "tensorrt")
    with pytest.raises(ConfigError, match="EMBEDLAB_AUTO_BACKEND='tensorrt'"):
        runtime.backend_name(frozen(tok, "auto"))


def test_an_unknown_backend_is_a_config_error(tok) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'; choose one of auto, torch, onnx"):
        tiny_encoder(tok, backend="tensorrt")


@pytest.mark.slow
def test_minilm_on_a_scifact_slice_equal_vectors_and_ndcg(real_data: Path) -> None:
    """The real student model on real abstracts (128 tokens, 40 queries, their documents + distractors)."""
    from embedlab.data.tasks import load_task
    from embedlab.eval.retrieval import RetrievalSettings, evaluate_retrieval

    torch.set_num_threads(1)
    data = load_task("scifact", real_data, limit=40, max_docs=80)
    settings = RetrievalSettings(batch_size=16, top_k=10, k_values=(10,))
    scores, vectors = {}, {}
    texts = list(data.corpus.values())[:16]
    for backend in ("torch", "onnx"):
        enc = Encoder.from_pretrained("all-MiniLM-L6-v2", max_length=128, backend=backend).requires_grad_(False)
        assert runtime.backend_name(enc) == backend
        scores[backend] = evaluate_retrieval(data, enc, settings=settings).rows[0]["ndcg_at_10"]
        vectors[backend] = enc.encode(texts)
    assert np.abs(vectors["onnx"] - vectors["torch"]).max() <= TOLERANCE
    assert abs(scores["onnx"] - scores["torch"]) <= 1e-4 and scores["torch"] > 0.5
