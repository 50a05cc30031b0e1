"""Precision chosen by the hardware: what `precision: auto` means for the teacher, the student's evaluation passes
and the Lightning trainer.

bf16 pays only where the device computes it natively: a CUDA device with bf16, or a CPU whose oneDNN kernels use
AVX512-BF16 or AMX. Elsewhere bf16 autocast is emulated — on an AVX2-only CPU about 4x *slower* than fp32
(`bench/precision.py`) — so `auto` falls back to fp32 there. fp16 is never chosen on its own (on a CPU it is
emulated too, and its range needs loss scaling). An explicit `bf16` on a CPU without native support still runs, with
one warning saying what it costs.

`EMBEDLAB_AUTO_PRECISION=fp32|bf16` overrides the probe (a misdetected machine; the test suite pins fp32 so that
its numbers do not depend on the CPU kind CI lands on).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass

import torch

from embedlab.errors import ConfigError

log = logging.getLogger("embedlab.precision")

ENCODER_PRECISIONS = ("auto", "fp32", "bf16")  # Encoder / teacher / evaluation passes (bf16 = autocast)
TRAINER_AUTO = "auto"  # the trainer knob takes Lightning's values (32-true, bf16-mixed, ...) or auto
OVERRIDE_ENV = "EMBEDLAB_AUTO_PRECISION"


@dataclass(frozen=True)
class Hardware:
    """What decides native bf16 on one device type."""

    device: str  # cpu | cuda
    capability: str  # cpu: ATen's dispatch level (AVX2, AVX512, ...); cuda: the device name
    native_bf16: bool
    reason: str  # one line, e.g. "cpu capability AVX2, no native bf16 -> fp32"


def cpu_features() -> dict[str, object]:
    """The probes torch offers; oneDNN's answer honours ONEDNN_MAX_CPU_ISA (an AVX2 cap turns it off)."""
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "amx": bool(torch.cpu._is_amx_tile_supported()),
    }


def probe(device: str = "cpu") -> Hardware:
    """Native bf16 on `device` ("cpu" or "cuda"), with the reason in words (not cached: tests fake the probes)."""
    forced = os.environ.get(OVERRIDE_ENV)
    if forced:
        if forced not in ("fp32", "bf16"):
            raise ConfigError(f"{OVERRIDE_ENV}={forced!r}: choose fp32 or bf16")
        return Hardware(device, "override", forced == "bf16", f"{OVERRIDE_ENV}={forced} -> {forced}")
    if device == "cuda":
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return Hardware(device, name, native, f"cuda {name}, {'bf16' if native else 'no bf16'} -> {_choice(native)}")
    f = cpu_features()
    units = [u for u, present in (("AMX", f["amx"]), ("AVX512-BF16", f["avx512_bf16"])) if present]
    # oneDNN must both be allowed the bf16 instructions (no ISA cap below them) and the CPU must have them:
    # oneDNN also reports bf16 "supported" on plain AVX512 CPUs, where it emulates it.
    native = bool(f["onednn_bf16"] and units and f["capability"] != "AVX2")
    have = f"native bf16 ({'+'.join(units)})" if native else "no native bf16"
    return Hardware(
        device, str(f["capability"]), native, f"cpu capability {f['capability']}, {have} -> {_choice(native)}"
    )


def _choice(native: bool) -> str:
    return "bf16" if native else "fp32"


def _device_type(device: torch.device | str) -> str:
    return "cuda" if torch.device(device).type == "cuda" else "cpu"


@functools.cache
def _announce(reason: str) -> None:
    """Logged once per distinct decision, however many encoders resolve `auto`."""
    log.info("precision auto: %s", reason)


@functools.cache
def _warn_emulated(reason: str) -> None:
    log.warning(
        "precision bf16 requested, but %s: bf16 runs emulated here, about 4x slower than fp32 on an AVX2 CPU "
        "(bench/precision.py); precision=auto picks fp32",
        reason.rsplit(" -> ", 1)[0],
    )


def resolve(precision: str, device: torch.device | str = "cpu") -> str:
    """An Encoder's precision (auto | fp32 | bf16) on `device` -> fp32 | bf16."""
    if precision not in ENCODER_PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(ENCODER_PRECISIONS)}")
    if precision == "fp32":
        return "fp32"
    hw = probe(_device_type(device))
    if precision == "auto":
        _announce(hw.reason)
        return _choice(hw.native_bf16)
    if not hw.native_bf16 and hw.device == "cpu":
        _warn_emulated(hw.reason)
    return "bf16"


def trainer_device(accelerator: str) -> str:
    """Where Lightning will train for `trainer.accelerator` (auto picks CUDA when torch sees it)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def resolve_trainer(precision: str | int, accelerator: str = "auto") -> str | int:
    """Lightning's `trainer.precision`: `auto` -> bf16-mixed where the training device runs bf16 natively, else
    32-true; any other value passes through (bf16-mixed on a CPU without native bf16 warns)."""
    device = trainer_device(str(accelerator))
    if precision == TRAINER_AUTO:
        hw = probe(device)
        _announce(hw.reason)
        return "bf16-mixed" if hw.native_bf16 else "32-true"
    if str(precision).startswith("bf16") and device == "cpu":
        hw = probe("cpu")
        if not hw.native_bf16:
            _warn_emulated(hw.reason)
    return precision


def record(resolved: dict[str, str | int | None], device: str = "cpu") -> dict:
    """What manifest.json keeps: the probe and each knob's resolved value."""
    return {**asdict(probe(device)), "resolved": resolved}
