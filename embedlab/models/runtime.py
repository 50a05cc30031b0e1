"""Inference backends for frozen encoders: ONNX Runtime or OpenVINO run the backbone's forward pass
(input_ids, attention_mask -> last_hidden_state); pooling, prompts, projection and normalisation stay in torch.

The knob is `backend` (model.backend, teacher.backend): auto | torch | onnx | onnx-int8 | openvino.
- torch is the reference and the only path of an encoder with a trainable parameter (training needs autograd).
- auto: on a CPU at fp32, the first installed of AUTO_ORDER, else torch. ONNX Runtime was measured 1.18x faster than
  torch eager on all-mpnet-base-v2 at 256 tokens on a 2-core AVX2 CPU, equal to 3.5e-7 (bench/README.md).
- onnx-int8 (dynamic int8 weights) is an explicit opt-in: it moves the vectors by ~1e-2, never chosen by auto.
- bf16 (`precision` resolving to bf16): OpenVINO runs it (its bf16 hint); ONNX Runtime has no bf16 CPU kernels, so
  onnx there and auto fall back to torch's bf16 autocast.

The backbone is exported once (ONNX, TorchScript exporter) into <cache>/runtime/<digest of weights, config and
exporter>/ and verified against torch on two probe batches of other shapes than the export's; a backbone that fails
to export or verify runs on torch, said in one log line. `EMBEDLAB_AUTO_BACKEND=torch|onnx|openvino` overrides what
auto picks (the test suite pins torch).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from embedlab.errors import ConfigError
from embedlab.hub import cache_dir
from embedlab.io import atomic_path, fingerprint
from embedlab.models.fingerprint import hash_weights

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino")
AUTO_ORDER = ("onnx", "openvino")  # what auto tries, in order (measured: bench/frozen_pass.py)
OVERRIDE_ENV = "EMBEDLAB_AUTO_BACKEND"
EXPORT_VERSION = 1  # bump when the export changes: old exports then sit in another folder, never reused
PACKAGES = {"onnx": ("onnxruntime", "onnx"), "onnx-int8": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}
PROBES = (  # export sample and verification probes: padded rows, and the second probe without padding
    ["the export sample", "a longer export sample, long enough that the batch needs padding"],
    ["probe", "another probe sentence, with padding", "three rows this time, to vary the batch size"],
    ["no padding at all"],
)
VERIFY_TOLERANCE = 1e-3  # on last_hidden_state, relative to its largest magnitude (fp32 exports agree to ~1e-6)

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) int64 -> last_hidden_state
_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # encoder -> (state key, backend name, runner)


def check(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def installed(backend: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in PACKAGES[backend])


def backend_name(encoder) -> str:
    """The backend `encoder.encode` runs: torch or one of the runtimes (exporting on first use)."""
    return _state(encoder)[0]


def runner(encoder) -> Runner | None:
    """The runtime's backbone forward for `encoder`, or None: run the torch backbone."""
    return _state(encoder)[1]


def _state(encoder) -> tuple[str, Runner | None]:
    params = list(encoder.parameters())
    precision = encoder.resolved_precision()
    # An in-place change of any weight (load_state_dict, a soup) bumps its version: export again; a frozen or
    # unfrozen parameter changes what may run.
    weights = ((p.data_ptr(), p._version, p.requires_grad) for p in params)
    key = (encoder.backend, precision, os.environ.get(OVERRIDE_ENV), *weights)
    held = _STATE.get(encoder)
    if held is not None and held[0] == key:
        return held[1], held[2]
    name, run = _choose(encoder, params, precision)
    _STATE[encoder] = (key, name, run)
    return name, run


def _choose(encoder, params: list[nn.Parameter], precision: str) -> tuple[str, Runner | None]:
    asked = encoder.backend
    if asked == "torch":
        return "torch", None
    why = _not_applicable(encoder, params, precision, asked)
    if why:
        if asked != "auto":
            _say(f"backend {asked} is not used for {encoder.name or 'this encoder'}: {why}; running torch")
        return "torch", None
    candidates = [asked] if asked != "auto" else _auto_candidates(precision)
    for backend in candidates:
        if not installed(backend):
            if asked != "auto":
                _say(f"backend {asked} needs {' and '.join(PACKAGES[asked])} (pip install 'embedlab[fast]'); torch")
            continue
        try:
            return backend, _load(encoder, backend, precision)
        except Exception as e:  # any export/verify/compile failure: the torch path is always there
            _say(f"{backend} backend unavailable for {encoder.name or type(encoder.backbone).__name__} ({e}); torch")
            return "torch", None
    return "torch", None


def _not_applicable(encoder, params: list[nn.Parameter], precision: str, asked: str) -> str | None:
    if any(p.requires_grad for p in params):
        return "it has trainable parameters (training needs autograd)"
    if encoder.device.type != "cpu":
        return f"the weights are on {encoder.device.type} (the runtimes here run on the CPU)"
    if any(p.dtype != torch.float32 for p in encoder.backbone.parameters()):
        return "its weights are not float32"
    if precision == "bf16" and asked in ("onnx", "onnx-int8"):
        return "precision resolves to bf16 and ONNX Runtime has no bf16 CPU kernels"
    return None


def _auto_candidates(precision: str) -> list[str]:
    forced = os.environ.get(OVERRIDE_ENV)
    if forced:
        if forced not in ("torch", *AUTO_ORDER):
            raise ConfigError(f"{OVERRIDE_ENV}={forced!r}: choose torch, {', '.join(AUTO_ORDER)}")
        return [] if forced == "torch" else [forced]
    return [] if precision == "bf16" else list(AUTO_ORDER)  # bf16: torch's autocast is the measured path


@functools.cache
def _say(message: str) -> None:
    """One log line per distinct fallback, however many encoders or calls meet it."""
    log.warning("%s", message)


# ------------------------------------------------------------------------------------------------- export
def export_folder(backbone: nn.Module) -> Path:
    """<cache>/runtime/<digest>: one folder per backbone weights, config and exporter."""

    config = backbone.config.to_json_string() if hasattr(backbone, "config") else ""
    digest = fingerprint(
        [hash_weights(backbone).hexdigest(), type(backbone).__name__, config, torch.__version__, EXPORT_VERSION]
    )
    return cache_dir() / "runtime" / digest


class _Hidden(nn.Module):
    """The backbone as the exporter sees it: two tensors in, last_hidden_state out."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _probe(tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    batch = tokenizer(texts, padding=True, return_tensors="np")
    return {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


def export_onnx(encoder, folder: Path) -> Path:
    """The fp32 ONNX graph of `encoder.backbone` in `folder` (written once, atomically), verified against torch."""
    target = folder / "onnx" / "model.onnx"
    if target.exists():
        return target
    from embedlab.models import lora

    backbone = lora.merged_copy(encoder.backbone)
    sample = _probe(encoder.tokenizer, PROBES[0])
    log.info("exporting %s's backbone to ONNX once (%s)", encoder.name or type(backbone).__name__, folder)
    with atomic_path(target.parent) as tmp, torch.inference_mode(False), torch.no_grad(), _eval_mode(backbone):
        tmp.mkdir(parents=True)
        dynamic = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
            torch.onnx.export(
                _Hidden(backbone).eval(),  # the exporter restores the mode of what it is given: eval, no dropout
                (torch.from_numpy(sample["input_ids"]), torch.from_numpy(sample["attention_mask"])),
                str(tmp / "model.onnx"),
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={**dynamic, "last_hidden_state": {0: "batch", 1: "tokens"}},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter: no onnxscript needed, and it handles these models
            )
        verify(backbone, encoder.tokenizer, _fp32_runner(tmp / "model.onnx"))
        (tmp / "export.json").write_text(json.dumps({"name": encoder.name, "torch": torch.__version__}))
    return target


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside, each submodule's own mode restored after."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def verify(backbone: nn.Module, tokenizer, run: Runner) -> None:
    """Raise unless `run` matches the torch backbone on probes of other shapes than the export sample (a tracer
    that recorded a shape or a mask branch as a constant shows here)."""
    for texts in PROBES[1:]:
        probe = _probe(tokenizer, texts)
        with torch.no_grad():
            ref = backbone(**{k: torch.from_numpy(v) for k, v in probe.items()}).last_hidden_state.float().numpy()
        out = run(probe["input_ids"], probe["attention_mask"])
        valid = probe["attention_mask"].astype(bool)
        if out.shape != ref.shape or not np.isfinite(out).all():
            raise RuntimeError(f"the exported graph gives shape {out.shape}, torch {ref.shape}")
        diff = float(np.abs(out - ref)[valid].max())
        if diff > VERIFY_TOLERANCE * max(1.0, float(np.abs(ref[valid]).max())):
            raise RuntimeError(f"the exported graph differs from torch by {diff:.2e} on a probe batch")


def quantize_int8(fp32: Path) -> Path:
    """Dynamic int8 weights (per channel) of an fp32 ONNX graph, beside it, written once."""
    target = fp32.parent.parent / "onnx-int8" / "model.onnx"
    if target.exists():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(target.parent) as tmp:
        tmp.mkdir(parents=True)
        quantize_dynamic(str(fp32), str(tmp / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    return target


# ------------------------------------------------------------------------------------------------- runners
def _threads() -> int:
    return torch.get_num_threads()  # what torch would use (OMP_NUM_THREADS / torch.set_num_threads)


def _fp32_runner(path: Path) -> Runner:
    return _ort(path) if installed("onnx") else _openvino(path, "fp32")


def _ort(path: Path) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = _threads(), 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return run


def _openvino(path: Path, precision: str) -> Runner:
    import openvino as ov

    # The CPU plugin defaults to bf16 on AVX512-BF16/AMX CPUs: the hint pins what `precision` resolved to.
    settings = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "INFERENCE_NUM_THREADS": _threads(),
        "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all threads on it
    }
    request = ov.Core().compile_model(str(path), "CPU", settings).create_infer_request()

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        out = request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return np.array(out[0], dtype=np.float32)  # a copy: the request reuses its output buffer

    return run


def _load(encoder, backend: str, precision: str) -> Runner:
    fp32 = export_onnx(encoder, export_folder(encoder.backbone))
    if backend == "onnx":
        return _ort(fp32)
    if backend == "onnx-int8":
        return _ort(quantize_int8(fp32))
    return _openvino(fp32, precision)


def last_hidden_state(run: Runner, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The runtime's backbone forward on torch tensors (CPU int64 in, float32 out)."""
    out = run(input_ids.to(torch.int64).numpy(), attention_mask.to(torch.int64).numpy())
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
