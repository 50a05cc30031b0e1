"""`precision: auto`: bf16 only where the device runs it natively, fp32 elsewhere; both kinds of CPU faked."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from embedlab import precision
from embedlab.errors import ConfigError
from tests.tiny import TEXTS, tiny_encoder

AVX2 = {"capability": "AVX2", "onednn_bf16": False, "avx512_bf16": False, "amx": False}  # e.g. AMD EPYC Zen 2/3
# What torch reports under ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 on a CPU that has AVX512-BF16:
CAPPED = {"capability": "AVX2", "onednn_bf16": False, "avx512_bf16": True, "amx": False}
AVX512_NO_BF16 = {"capability": "AVX512", "onednn_bf16": True, "avx512_bf16": False, "amx": False}  # Skylake-SP
AVX512_BF16 = {"capability": "AVX512", "onednn_bf16": True, "avx512_bf16": True, "amx": False}  # Zen 4, Cooper Lake
AMX = {"capability": "AVX512", "onednn_bf16": True, "avx512_bf16": True, "amx": True}  # Sapphire Rapids


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Fake the CPU probe (and drop the suite's pin); returns a setter."""
    monkeypatch.delenv(precision.OVERRIDE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    precision._announce.cache_clear()
    precision._warn_emulated.cache_clear()

    def fake(features: dict) -> None:
        monkeypatch.setattr(precision, "cpu_features", lambda: dict(features))

    return fake


@pytest.mark.parametrize(
    ("features", "encoder", "trainer"),
    [
        (AVX2, "fp32", "32-true"),
        (CAPPED, "fp32", "32-true"),
        (AVX512_NO_BF16, "fp32", "32-true"),
        (AVX512_BF16, "bf16", "bf16-mixed"),
        (AMX, "bf16", "bf16-mixed"),
    ],
)
def test_auto_follows_native_bf16(cpu, features: dict, encoder: str, trainer: str) -> None:
    cpu(features)
    assert precision.resolve("auto", "cpu") == encoder
    assert precision.resolve_trainer("auto", "cpu") == trainer
    assert precision.resolve_trainer("auto", "auto") == trainer  # no CUDA: auto trains on the CPU


def test_reason_names_the_capability_and_the_choice(cpu) -> None:
    cpu(AVX2)
    assert precision.probe().reason == "cpu capability AVX2, no native bf16 -> fp32"
    cpu(AMX)
    assert precision.probe().reason == "cpu capability AVX512, native bf16 (AMX+AVX512-BF16) -> bf16"


def test_auto_decision_is_logged_once(cpu, caplog: pytest.LogCaptureFixture) -> None:
    cpu(AVX2)
    with caplog.at_level(logging.INFO, logger="embedlab.precision"):
        for _ in range(3):
            precision.resolve("auto")
            precision.resolve_trainer("auto", "cpu")
    assert [r.getMessage() for r in caplog.records] == ["precision auto: cpu capability AVX2, no native bf16 -> fp32"]


def test_explicit_bf16_without_native_support_runs_and_warns_once(cpu, caplog: pytest.LogCaptureFixture) -> None:
    cpu(AVX2)
    with caplog.at_level(logging.WARNING, logger="embedlab.precision"):
        assert precision.resolve("bf16") == "bf16"
        assert precision.resolve_trainer("bf16-mixed", "cpu") == "bf16-mixed"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "4x slower than fp32" in warnings[0].getMessage()
    assert "cpu capability AVX2, no native bf16" in warnings[0].getMessage()


def test_explicit_values_pass_through_silently_where_native(cpu, caplog: pytest.LogCaptureFixture) -> None:
    cpu(AMX)
    with caplog.at_level(logging.INFO, logger="embedlab.precision"):
        assert precision.resolve("bf16") == "bf16" and precision.resolve("fp32") == "fp32"
        assert precision.resolve_trainer("32-true", "cpu") == "32-true"
        assert precision.resolve_trainer("16-mixed", "cpu") == "16-mixed"  # asked for: passed on to Lightning
    assert caplog.records == []


def test_cuda_with_and_without_bf16(cpu, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu(AVX2)  # the host CPU does not matter for a CUDA device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve_trainer("auto", "auto") == "bf16-mixed"
    assert precision.resolve("auto", "cuda:0") == "bf16"
    assert precision.resolve_trainer("auto", "cpu") == "32-true"  # trainer.accelerator=cpu on a GPU machine
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.resolve_trainer("auto", "gpu") == "32-true"  # fp16 is never chosen on its own
    assert precision.probe("cuda").reason == "cuda Tesla V100, no bf16 -> fp32"


def test_override_and_bad_values(cpu, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu(AVX2)
    monkeypatch.setenv(precision.OVERRIDE_ENV, "bf16")
    assert precision.resolve("auto") == "bf16"
    monkeypatch.setenv(precision.OVERRIDE_ENV, "fp16")
    with pytest.raises(ConfigError, match="EMBEDLAB_AUTO_PRECISION='fp16': choose fp32 or bf16"):
        precision.resolve("auto")
    with pytest.raises(ConfigError, match="unknown precision 'fp16'"):
        precision.resolve("fp16")


def test_encoder_auto_encodes_and_fingerprints_in_the_resolved_precision(cpu, tok) -> None:
    """The same weights under `auto` give bf16-autocast vectors (and another cache key) on a native-bf16 CPU, the
    exact fp32 vectors on an AVX2 CPU."""
    encoder = tiny_encoder(tok, projection=None, precision="auto")
    reference = tiny_encoder(tok, projection=None, precision="fp32")
    cpu(AVX2)
    fp32_vectors, fp32_key = encoder.encode(TEXTS), encoder.fingerprint()
    np.testing.assert_array_equal(fp32_vectors, reference.encode(TEXTS))
    assert fp32_key == reference.fingerprint() and encoder.describe()["precision"] == "fp32"
    cpu(AMX)
    bf16_vectors, bf16_key = encoder.encode(TEXTS), encoder.fingerprint()
    assert bf16_key != fp32_key and encoder.describe()["precision"] == "bf16"
    gap = np.abs(bf16_vectors - fp32_vectors).max()
    assert 0 < gap < 0.05  # bf16 rounding: close, never identical (the fp32 pass above is bit-exact)
