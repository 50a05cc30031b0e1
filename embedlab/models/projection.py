"""Projection heads: a model folder's Dense with a new head stacked after it, and their closed-form (ridge) fit."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

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


class StackedProjection(nn.Sequential):
    """A model folder's Dense layer followed by a new linear head (`projection_dim` unlike the Dense's size).

    The Dense keeps its pretrained weights and its place after pooling; the head maps its outputs to the new size.
    Both are linear, so export folds them into one Dense (`folded`) that any sentence-transformers loader reads."""

    def __init__(self, dense: nn.Linear, head: nn.Linear) -> None:
        super().__init__(dense, head)

    @property
    def out_features(self) -> int:
        return self[1].out_features

    def folded(self) -> nn.Linear:
        """One Linear computing head(dense(x)): W = W_h W_d, b = W_h b_d + b_h (in float64, then the Dense's dtype)."""
        dense, head = self[0], self[1]
        w_d, w_h = dense.weight.detach().double(), head.weight.detach().double()
        b_d = dense.bias.detach().double() if dense.bias is not None else w_d.new_zeros(w_d.shape[0])
        b_h = head.bias.detach().double() if head.bias is not None else w_h.new_zeros(w_h.shape[0])
        out = nn.Linear(dense.in_features, head.out_features).to(device=dense.weight.device, dtype=dense.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(w_h @ w_d)
            out.bias.copy_(w_h @ b_d + b_h)
        return out


def single_linear(projection: nn.Module | None) -> nn.Linear | None:
    """The projection as one Linear (what a model folder's single Dense holds)."""
    return projection.folded() if isinstance(projection, StackedProjection) else projection


def fit_projection(projection: nn.Module, features: np.ndarray, targets: np.ndarray, ridge: float) -> None:
    """Fit the projection's trainable head by ridge regression of `targets` on pooled `features`: a plain Linear
    directly, a stacked head on its Dense's outputs (the Dense keeps its pretrained weights)."""
    if isinstance(projection, StackedProjection):
        with torch.no_grad():
            features = projection[0](torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()
        projection = projection[1]
    set_linear(projection, *fit_ridge(features, targets, ridge))
