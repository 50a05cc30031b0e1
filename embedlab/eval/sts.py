"""STS evaluation: correlation between cosine similarity of the two sentences and the gold score (MTEB)."""

from __future__ import annotations

import numpy as np

from embedlab.data import StsPairs
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.quantize import check_dims, truncate


def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (what Spearman's rho is defined on)."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Boundaries of runs of equal values; every member of a run gets the mean of the run's positions.
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ((first + last) / 2.0 + 1.0)[run_id]
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x @ y) / np.sqrt((x @ x) * (y @ y)))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(rank_average(x), rank_average(y))


def evaluate_sts(
    pairs: StsPairs,
    encoder,
    *,
    batch_size: int = 64,
    dim: int | None = None,
    cache: EmbeddingCache | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """(cosine_spearman and cosine_pearson (MTEB names), per-pair cosines); each distinct sentence is encoded once."""
    check_dims([dim], encoder.dim)  # before encoding, not after
    unique = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    row = {s: i for i, s in enumerate(unique)}
    emb = truncate(
        np.asarray(encode_cached(encoder, unique, kind="query", cache=cache, batch_size=batch_size), dtype=np.float64),
        dim,
    )
    a = emb[[row[s] for s in pairs.sentences1]]
    b = emb[[row[s] for s in pairs.sentences2]]
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    gold = np.asarray(pairs.scores, dtype=np.float64)
    return {"cosine_spearman": spearman(cos, gold), "cosine_pearson": pearson(cos, gold)}, cos
