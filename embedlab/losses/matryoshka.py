"""Matryoshka: apply any embedding loss at several nested prefix sizes of the embedding."""

from __future__ import annotations

from embedlab.errors import ConfigError
from embedlab.losses.base import Embeddings, Loss, LossOutput


class Matryoshka(Loss):
    r"""Matryoshka Representation Learning (Kusupati et al., NeurIPS 2022).

    Wraps an embedding loss L; with dims d_1 < … < d_M and weights w_m:

        L_MRL = Σ_m w_m · L(embeddings truncated to their first d_m coordinates)

    Written once for every loss: it truncates the `Embeddings` record (student fields, and the teacher when it has
    the student's size) and calls the inner loss, which normalises as it always does. The convention that follows:

    - Score-based losses (InfoNCE, focal, KL, MarginMSE) with ``similarity: cosine`` renormalise every prefix: the
      score at d_m is the cosine of the two d_m-prefixes, which is what a search over truncated (and renormalised)
      vectors ranks by, and it keeps one temperature and one teacher-margin scale valid at every size. With
      ``similarity: dot`` they score raw prefixes, whose dot products shrink with d_m.
    - LEAF compares raw prefixes: the student's first d_m coordinates regress onto the first d_m coordinates of
      the teacher's vector, unrenormalised. Every level's target is then a piece of the one full-size target (the
      full loss is the prefix loss plus the rest), so the nested terms never pull against each other, and the
      student inherits the teacher's own nested space (used beside the teacher's prefix: teacher documents ×
      student queries). Renormalised prefixes would ask for a different scale at each size. ``normalize: true``
      matches the prefixes' directions instead (2 − 2 cos of the prefixes).
    """

    def __init__(self, inner: Loss, dims: list[int], weights: list[float] | None = None) -> None:
        super().__init__()
        if not dims:
            raise ConfigError("matryoshka dims is empty")
        weights = list(weights) if weights is not None else [1.0] * len(dims)
        if len(weights) != len(dims):
            raise ConfigError(f"matryoshka: {len(dims)} dims but {len(weights)} weights")
        self.inner, self.dims, self.weights = inner, [int(d) for d in dims], [float(w) for w in weights]
        self.requires = inner.requires

    def check_dim(self, dim: int) -> None:
        too_big = [d for d in self.dims if d > dim or d < 1]
        if too_big:
            raise ConfigError(f"matryoshka dims {too_big} are outside 1..{dim} (the embedding size)")
        self.inner.check_dim(dim)

    def forward(self, emb: Embeddings) -> LossOutput:
        total, logs = None, {}
        for dim, weight in zip(self.dims, self.weights, strict=True):
            out = self.inner(emb.truncated(dim))
            total = weight * out.value if total is None else total + weight * out.value
            logs[f"dim_{dim}"] = out.value.item()
        return LossOutput(total, logs)
