"""Projection heads: a model folder's Dense with a new head stacked after it, and their closed-form (ridge) fit."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from embedlab.errors import ConfigError

Pair = tuple[np.ndarray, np.ndarray]  # (features [n, Ds], targets [n, Dt]) of the same n texts


def fit_ridge(features: np.ndarray, targets: np.ndarray, ridge: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    r"""W, b minimising ‖(X − x̄) W + ȳ − Y‖² + λ N ‖W‖² (centred least squares with an intercept).

    X [N, Ds] are the frozen student's pooled features, Y [N, Dt] the teacher's embeddings of the same texts.
    λ is scaled by N so one value suits any text count. Returns W as [Dt, Ds] (nn.Linear layout) and b [Dt].
    This is the baseline a trained LEAF recipe must beat, and its starting point: a random projection trained
    end-to-end damages the pretrained student before it aligns (experiments/README.md, "LEAF by hand, before
    embedlab").
    """
    return fit_ridge_blocks(lambda: iter([(features, targets)]), ridge)


def fit_ridge_blocks(blocks: Callable[[], Iterator[Pair]], ridge: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """`fit_ridge` over (features, targets) row blocks that need not be in memory together (a mixture's texts in
    memory-mapped cache entries): `blocks()` is walked twice, for the means, then for the centred Gram matrix and
    cross products accumulated in float64 — the system `fit_ridge` solves, in O(Ds² + Ds·Dt) memory."""
    if ridge < 0:
        raise ConfigError(f"ridge must be >= 0, got {ridge}")
    n, x_sum, y_sum = 0, 0.0, 0.0
    for x, y in blocks():
        if x.shape[0] != y.shape[0]:
            raise ConfigError(f"ridge fit: {x.shape[0]} feature rows but {y.shape[0]} target rows")
        n, x_sum, y_sum = n + len(x), x_sum + f64(x).sum(0), y_sum + f64(y).sum(0)
    if not n:
        raise ConfigError("ridge fit: no rows to fit on")
    x_mean, y_mean = x_sum / n, y_sum / n
    gram, cross = 0.0, 0.0
    for x, y in blocks():
        xc, yc = f64(x) - x_mean, f64(y) - y_mean
        gram, cross = gram + xc.T @ xc, cross + xc.T @ yc
    weight = np.linalg.solve(gram + ridge * n * np.eye(len(x_mean)), cross)  # [Ds, Dt]
    bias = y_mean - x_mean @ weight
    return weight.T.astype(np.float32), bias.astype(np.float32)


def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


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
    fit_projection_blocks(projection, lambda: iter([(features, targets)]), ridge)


def fit_projection_blocks(projection: nn.Module, blocks: Callable[[], Iterator[Pair]], ridge: float) -> None:
    """`fit_projection` over (features, targets) row blocks (`fit_ridge_blocks`)."""
    if isinstance(projection, StackedProjection):
        dense, projection = projection[0], projection[1]
        inner = blocks

        def blocks() -> Iterator[Pair]:
            with torch.no_grad():
                for x, y in inner():
                    yield dense(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy(), y

    set_linear(projection, *fit_ridge_blocks(blocks, ridge))
