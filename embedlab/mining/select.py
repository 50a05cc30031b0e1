"""Choosing hard negatives from retrieved candidates: rank window, margin filters, sampling.

Everything here is array code over a [Q, K] candidate table (Q queries, K candidates in rank order), so the rules
can be unit-tested on hand-made scores and run at corpus scale without a Python loop per candidate.

Filters apply in this order, each counting the candidates it newly drops:
  1. `positive`   a known positive of the query;
  2. `duplicate`  the same text as a positive or as a higher-ranked candidate (exact string match);
  3. `window`     rank (1-based, in the retrieved list) outside [min_rank, max_rank] (KaLM samples ranks 50-100);
  4. `margin`     score above the query's threshold t_q, with s⁺_q the lowest score of the query's positives:
       relative   t_q = s⁺_q − (1 − perc) · |s⁺_q|                    (NV-Retriever TopK-PercPos, perc = 0.95)
       absolute   t_q = s⁺_q − δ                                       (NV-Retriever TopK-MarginPos)
       adaptive   t_q = s⁺_q − clip(λ · (s⁺_q − μ_q), δ_min, δ_max)   (ours, see below)
     where μ_q is the mean score of the query's top-m candidates left after filters 1-2.
     For s⁺_q > 0 the relative rule is NV-Retriever's perc · s⁺_q; written with |s⁺_q| it stays at or below s⁺_q
     when s⁺_q ≤ 0 too (perc · s⁺_q would lie above a negative s⁺_q and keep negatives that outscore the positive).
     Its margin is a share of |s⁺_q|, so it carries over to raw inner products (`normalize=false`, scores beyond
     ±1); the absolute and adaptive δs are in score units and need rescaling there.
Then `sampling` takes `num_negatives` of what is left: the highest-ranked (`top`) or uniformly at random (`random`,
seeded per run, so the same config gives the same file).

The adaptive rule: a query whose positive stands far above its typical top candidates (large gap s⁺ − μ) is easy, and
a candidate that nevertheless comes close to its positive is suspicious (likely an unlabeled positive), so it gets a
wide margin; a hard query whose candidates crowd the positive (small gap) gets a narrow one, so it keeps negatives
at all instead of losing its whole list to a fixed margin. δ_min ≥ 0 always drops candidates scoring above the
positive. Inspired by NV-Retriever's positive-aware thresholds (Moreira et al., 2024) and LG-ANNA-Embedding's
adaptive-margin mining (LG AI Research, 2025); the exact rule is embedlab's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embedlab.errors import ConfigError

MARGINS = ("none", "relative", "absolute", "adaptive")
SAMPLINGS = ("top", "random")
FILTERS = ("positive", "duplicate", "window", "margin")


@dataclass
class SelectionConfig:
    num_negatives: int = 8  # negatives kept per query
    min_rank: int = 1  # first retrieved rank that may be a negative (1-based)
    max_rank: int = 100  # last retrieved rank that may be a negative
    margin: str = "none"  # none | relative | absolute | adaptive
    relative: float = 0.95  # relative: drop scores above positive score − (1 − relative) × |positive score|
    absolute: float = 0.05  # absolute: drop scores above positive score − absolute
    adaptive_scale: float = 0.5  # adaptive: λ, the share of the query's gap used as its margin
    adaptive_top: int = 10  # adaptive: m, how many top candidates give the query's typical score μ
    adaptive_min: float = 0.0  # adaptive: δ_min (≥ 0 drops anything above the positive)
    adaptive_max: float = 0.2  # adaptive: δ_max
    sampling: str = "top"  # top | random
    seed: int = 0  # random sampling seed

    def check(self) -> None:
        if self.margin not in MARGINS:
            raise ConfigError(f"mining margin must be one of {', '.join(MARGINS)}, got {self.margin!r}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"mining sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.num_negatives < 1:
            raise ConfigError(f"mining num_negatives must be ≥ 1, got {self.num_negatives}")
        if not 1 <= self.min_rank <= self.max_rank:
            raise ConfigError(f"mining needs 1 ≤ min_rank ≤ max_rank, got {self.min_rank} and {self.max_rank}")
        if not 0 < self.relative <= 1:
            raise ConfigError(f"mining relative margin must be in (0, 1], got {self.relative}")
        if self.absolute < 0:
            raise ConfigError(f"mining absolute margin must be ≥ 0, got {self.absolute}")
        if self.adaptive_scale < 0 or self.adaptive_top < 1 or not 0 <= self.adaptive_min <= self.adaptive_max:
            raise ConfigError("mining adaptive margin needs scale ≥ 0, top ≥ 1 and 0 ≤ min ≤ max")


@dataclass
class Selection:
    negatives: np.ndarray  # [Q, n] candidate column indices, −1 where a query has fewer than n
    dropped: dict[str, np.ndarray] = field(default_factory=dict)  # filter -> [Q, K] bool, what it newly dropped
    kept: np.ndarray | None = None  # [Q, K] bool: candidates that passed every filter (before sampling)
    threshold: np.ndarray | None = None  # [Q] the margin threshold (inf for none)

    def sampled(self) -> np.ndarray:
        """[Q, K] bool: the candidates chosen as negatives."""
        assert self.kept is not None
        out = np.zeros(self.kept.shape, dtype=bool)
        rows, slots = np.nonzero(self.negatives >= 0)
        out[rows, self.negatives[rows, slots]] = True
        return out

    def counts(self) -> dict[str, int]:
        """Candidates dropped by each filter, left after them, and sampled."""
        out = {f"dropped_{name}": int(mask.sum()) for name, mask in self.dropped.items()}
        assert self.kept is not None
        out["eligible"] = int(self.kept.sum())
        out["sampled"] = int((self.negatives >= 0).sum())
        return out


def margin_threshold(
    scores: np.ndarray, usable: np.ndarray, positive_score: np.ndarray, cfg: SelectionConfig
) -> np.ndarray:
    """Per-query score threshold t_q [Q]: candidates above it are dropped (see the module docstring)."""
    s_pos = positive_score.astype(np.float64)
    if cfg.margin == "none":
        return np.full(len(s_pos), np.inf)
    if cfg.margin == "relative":
        return s_pos - (1 - cfg.relative) * np.abs(s_pos)
    if cfg.margin == "absolute":
        return s_pos - cfg.absolute
    # adaptive: μ_q over the first m usable candidates in rank order
    rank_among_usable = np.cumsum(usable, axis=1)
    top = usable & (rank_among_usable <= cfg.adaptive_top)
    count = top.sum(1)
    mu = np.where(count > 0, (scores * top).sum(1) / np.maximum(count, 1), s_pos)
    delta = np.clip(cfg.adaptive_scale * (s_pos - mu), cfg.adaptive_min, cfg.adaptive_max)
    return s_pos - delta


def select_negatives(
    scores: np.ndarray,
    is_positive: np.ndarray,
    is_duplicate: np.ndarray,
    positive_score: np.ndarray,
    cfg: SelectionConfig,
) -> Selection:
    """Apply the filters and the sampling to a [Q, K] candidate table in rank order.

    scores [Q, K] float (−inf for missing candidates), is_positive / is_duplicate [Q, K] bool, positive_score [Q]
    (the lowest score among each query's positives). Returns the chosen columns and what each filter dropped."""
    cfg.check()
    q, k = scores.shape
    present = np.isfinite(scores)
    rank = np.arange(1, k + 1)[None, :]
    masks = {
        "positive": is_positive & present,
        "duplicate": is_duplicate & present,
        "window": ((rank < cfg.min_rank) | (rank > cfg.max_rank)) & present,
    }
    alive = present.copy()
    dropped: dict[str, np.ndarray] = {}
    for name in ("positive", "duplicate"):
        dropped[name] = masks[name] & alive
        alive &= ~masks[name]
    threshold = margin_threshold(np.where(present, scores, 0.0), alive, positive_score, cfg)  # μ ignores rank window
    dropped["window"] = masks["window"] & alive
    alive &= ~masks["window"]
    dropped["margin"] = (scores > threshold[:, None]) & alive
    alive &= ~dropped["margin"]

    if cfg.sampling == "top":
        order_key = np.broadcast_to(rank, (q, k)).astype(np.float64)
    else:
        order_key = np.random.default_rng(cfg.seed).random((q, k))
    order_key = np.where(alive, order_key, np.inf)
    order = np.argsort(order_key, axis=1, kind="stable")[:, : cfg.num_negatives]
    chosen = np.take_along_axis(alive, order, axis=1)
    if cfg.sampling == "random":  # keep the sampled negatives in rank order
        order = np.sort(np.where(chosen, order, k), axis=1)
        chosen = order < k
    negatives = np.where(chosen, order, -1)
    if negatives.shape[1] < cfg.num_negatives:  # fewer candidates than asked for
        negatives = np.pad(negatives, ((0, 0), (0, cfg.num_negatives - negatives.shape[1])), constant_values=-1)
    return Selection(negatives=negatives, dropped=dropped, kept=alive, threshold=threshold)
