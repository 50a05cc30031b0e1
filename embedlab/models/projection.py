"""Closed-form initialisation of a linear projection: ridge regression of targets on features."""

from __future__ import annotations

import numpy as np
import torch

from embedlab.errors import ConfigError


def fit_ridge(features: np.ndarray, targets: np.ndarray, ridge: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    r"""W, b minimising ‖(X − x̄) W + ȳ − Y‖² + λ N ‖W‖² (centred least squares with an intercept).

    X [N, Ds] are the frozen student's pooled features, Y [N, Dt] the teacher's embeddings of the same texts.
    λ is scaled by N so one value suits any text count. Returns W as [Dt, Ds] (nn.Linear layout) and b [Dt].
    This is the baseline a trained LEAF recipe must beat, and its starting point: a random projection trained
    end-to-end damages the pretrained student before it aligns (experiments/README.md, "LEAF by hand, before
    embedlab").
    """
    if features.shape[0] != targets.shape[0]:
        raise ConfigError(f"ridge fit: {features.shape[0]} feature rows but {targets.shape[0]} target rows")
    if ridge < 0:
        raise ConfigError(f"ridge must be >= 0, got {ridge}")
    x = features.astype(np.float64)
    y = targets.astype(np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc + ridge * len(x) * np.eye(x.shape[1])
    weight = np.linalg.solve(gram, xc.T @ yc)  # [Ds, Dt]
    bias = y_mean - x_mean @ weight
    return weight.T.astype(np.float32), bias.astype(np.float32)


def set_linear(layer: torch.nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))
