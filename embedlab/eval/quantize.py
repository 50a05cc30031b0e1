"""Matryoshka truncation and embedding quantization (int8 with calibration, binary), as evaluated in grids."""

from __future__ import annotations

import numpy as np

from embedlab.errors import ConfigError

PRECISIONS = ("float32", "int8", "binary")


def truncate(emb: np.ndarray, dim: int | None) -> np.ndarray:
    """First `dim` coordinates, L2-renormalised (Matryoshka); `None` keeps the full vector as it is."""
    if dim is None or dim == emb.shape[1]:
        return emb
    if not 0 < dim <= emb.shape[1]:
        raise ConfigError(f"truncation dim {dim} is outside 1..{emb.shape[1]} (the embedding size)")
    cut = emb[:, :dim]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def int8_calibration(calibration: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (low, step) from calibration vectors (the corpus), mapping [low, high] onto 256 levels."""
    low, high = calibration.min(axis=0), calibration.max(axis=0)
    step = np.maximum(high - low, 1e-12) / 255.0
    return low.astype(np.float32), step.astype(np.float32)


def to_int8(emb: np.ndarray, low: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Scalar-quantize to int8 with the calibration; values outside the calibrated range are clipped."""
    levels = np.round((emb - low) / step) - 128.0
    return np.clip(levels, -128, 127).astype(np.int8)


def from_int8(codes: np.ndarray, low: np.ndarray, step: np.ndarray) -> np.ndarray:
    """int8 codes back to float32 on the calibrated grid: what a float query is scored against."""
    return (codes.astype(np.float32) + 128.0) * step + low


def stored(emb: np.ndarray, precision: str) -> np.ndarray:
    """Document vectors as a float query sees them once stored at `precision`: int8 codes calibrated on these very
    vectors (the corpus), dequantized; binary as ±1 signs (the exhaustive form of binary rescoring)."""
    check_precisions([precision])
    if precision == "int8":
        low, step = int8_calibration(emb)
        return from_int8(to_int8(emb, low, step), low, step)
    if precision == "binary":
        return unpack_signs(to_binary(emb), emb.shape[1])
    return emb


def to_binary(emb: np.ndarray) -> np.ndarray:
    """One bit per dimension (positive -> 1), packed 8 per byte: [N, ceil(dim/8)] uint8."""
    return np.packbits(emb > 0, axis=1)


def unpack_signs(bits: np.ndarray, dim: int) -> np.ndarray:
    """Packed bits back to a ±1 float32 matrix [N, dim], for rescoring with float queries."""
    return np.unpackbits(bits, axis=1)[:, :dim].astype(np.float32) * 2.0 - 1.0


def check_precisions(precisions: list[str]) -> None:
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ConfigError(f"unknown precision(s) {unknown}; choose from {', '.join(PRECISIONS)}")


def check_dims(dims: list[int | None], size: int | None = None) -> None:
    """Matryoshka dims must be None (full size) or integers in 1..size; `size` None checks positivity only."""
    if not dims:
        raise ConfigError("dims is empty; use [None] (null in configs) for the full dimension")
    for d in dims:
        if d is None:
            continue
        if isinstance(d, bool) or not isinstance(d, int) or d < 1 or (size is not None and d > size):
            bound = f"1..{size} (the embedding size)" if size is not None else "a positive integer"
            raise ConfigError(f"truncation dim {d!r} is invalid: it must be {bound}")


def grid_dims(dims: list[int | None], size: int) -> list[int | None]:
    """The dims to evaluate, full size first (the reference cell reported in metrics.json), no repeats."""
    return [None, *dict.fromkeys(d for d in dims if d is not None and d != size)]
