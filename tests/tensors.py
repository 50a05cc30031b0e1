"""Small float64 tensors for loss tests: exact values and random batches kept away from the zero vector."""

from __future__ import annotations

import torch


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def random_away_from_zero(*shape: int, seed: int) -> torch.Tensor:
    """float64 vectors with norms in [1, 2]: cosine normalisation stays smooth."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True) * (1 + torch.rand(*shape[:-1], 1, generator=g, dtype=torch.float64))


def random_batch(b: int, k: int, d: int, seed: int, grad: bool = False):
    q = random_away_from_zero(b, d, seed=seed).requires_grad_(grad)
    p = random_away_from_zero(b, d, seed=seed + 1).requires_grad_(grad)
    n = random_away_from_zero(b, k, d, seed=seed + 2).requires_grad_(grad) if k else None
    return q, p, n
