"""Several teachers' scores → one soft label per candidate: per-query normalisation, then a weighted sum.

Scores of different teachers live on different scales (cosines in [−1, 1], reranker logits in the tens), so each
teacher's list is normalised per query before weighting:
  zscore   (s − mean_q) / std_q        the shape of the list, scale-free (std 0 → all zeros)
  minmax   (s − min_q) / (max_q − min_q)
  none     s as is (one teacher, or teachers already on one scale)
The result feeds `kl_distill` (a softmax over it at the teacher temperature) and `margin_mse` (differences of it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embedlab.errors import ConfigError

NORMALIZATIONS = ("zscore", "minmax", "none")


def normalize_per_query(scores: np.ndarray, how: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if how == "none":
        return s
    if how == "zscore":
        std = s.std(axis=1, keepdims=True)
        return np.divide(s - s.mean(axis=1, keepdims=True), std, out=np.zeros_like(s), where=std > 0)
    if how == "minmax":
        lo, span = s.min(axis=1, keepdims=True), np.ptp(s, axis=1, keepdims=True)
        return np.divide(s - lo, span, out=np.zeros_like(s), where=span > 0)
    raise ConfigError(f"unknown score normalisation {how!r}; choose from {', '.join(NORMALIZATIONS)}")


def combine_scores(score_sets: Sequence[np.ndarray], weights: Sequence[float], how: str = "zscore") -> np.ndarray:
    """Σ_t w_t · normalize(s_t), each s_t [Q, C]."""
    if not score_sets or len(score_sets) != len(weights):
        raise ConfigError(f"need one weight per teacher: {len(score_sets)} teachers, {len(weights)} weights")
    shapes = {np.shape(s) for s in score_sets}
    if len(shapes) != 1:
        raise ConfigError(f"teachers scored different lists: shapes {sorted(shapes)}")
    return sum(w * normalize_per_query(s, how) for s, w in zip(score_sets, weights, strict=True))
