"""Retrieved candidates per query as a [Q, K] table: corpus rows, scores, and which are positives or duplicates."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedlab.errors import ConfigError
from embedlab.eval.ann import SearchSettings, search

log = logging.getLogger(__name__)


@dataclass
class CandidateTable:
    index: np.ndarray  # [Q, K] corpus rows in rank order, −1 where the corpus ran out
    scores: np.ndarray  # [Q, K] similarity, −inf where missing
    is_positive: np.ndarray  # [Q, K] a known positive of the query
    is_duplicate: np.ndarray  # [Q, K] same text as a positive or as a higher-ranked candidate
    positive_scores: list[np.ndarray]  # per query: the scores of its positives (in the given order)

    @property
    def positive_score(self) -> np.ndarray:
        """[Q] the lowest positive score per query: the anchor every margin is measured from."""
        return np.array([s.min() for s in self.positive_scores])


def canonical_rows(texts: Sequence[str]) -> np.ndarray:
    """Per text, the row of its first exact copy (so equal texts share one id)."""
    first: dict[str, int] = {}
    return np.array([first.setdefault(t, i) for i, t in enumerate(texts)], dtype=np.int64)


def _padded(rows: Sequence[Sequence[int]]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0) or 1
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def later_repeats(ids: np.ndarray) -> np.ndarray:
    """[Q, K] True where the id already occurred earlier in the same row (stable sort keeps the first)."""
    order = np.argsort(ids, axis=1, kind="stable")
    ranked = np.take_along_axis(ids, order, axis=1)
    repeat_sorted = np.zeros_like(ids, dtype=bool)
    repeat_sorted[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    out = np.empty_like(repeat_sorted)
    np.put_along_axis(out, order, repeat_sorted, axis=1)
    return out


def retrieve(
    query_emb: np.ndarray, doc_emb: np.ndarray, k: int, how: SearchSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, corpus rows) per query by inner product, [Q, k] each, searched as `how` says (exact by
    default); k larger than the corpus is clipped with a warning, an empty corpus is an error."""
    scores, index, _ = retrieve_with_recall(query_emb, doc_emb, k, how)
    return scores, index


def retrieve_with_recall(
    query_emb: np.ndarray, doc_emb: np.ndarray, k: int, how: SearchSettings | None = None
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """`retrieve`, plus an approximate search's recall@k against exact (None for exact methods)."""
    n_docs = len(doc_emb)
    if n_docs == 0:
        raise ConfigError("the corpus is empty: nothing to mine")
    if k > n_docs:
        log.warning("top_k=%d is larger than the corpus (%d documents): retrieving all of them", k, n_docs)
        k = n_docs
    found = search(query_emb, doc_emb, k, how)
    return np.where(found.rows >= 0, found.scores, -np.inf), found.rows, found.recall


def flag_candidates(
    retrieved: tuple[np.ndarray, np.ndarray],
    query_emb: np.ndarray,
    doc_emb: np.ndarray,
    doc_texts: Sequence[str],
    positives: Sequence[Sequence[int]],
) -> CandidateTable:
    """Mark each retrieved candidate against its query's positives (corpus rows) and score every positive."""
    if any(len(p) == 0 for p in positives):
        raise ConfigError("every query needs at least one positive document")
    scores, index = retrieved
    k = index.shape[1]
    pos = _padded(positives)
    is_positive = (index[:, :, None] == pos[:, None, :]).any(-1) & (index >= 0)
    canon = canonical_rows(doc_texts)
    cand_canon = np.where(index >= 0, canon[np.maximum(index, 0)], -1 - np.arange(k)[None, :])  # missing: unique
    pos_canon = np.where(pos >= 0, canon[np.maximum(pos, 0)], -(10**12))
    copies_positive = (cand_canon[:, :, None] == pos_canon[:, None, :]).any(-1) & ~is_positive
    is_duplicate = copies_positive | (later_repeats(cand_canon) & ~is_positive)
    q = np.asarray(query_emb, dtype=np.float32)
    d = np.asarray(doc_emb, dtype=np.float32)
    positive_scores = [d[list(p)] @ q[i] for i, p in enumerate(positives)]
    return CandidateTable(index, scores, is_positive, is_duplicate, positive_scores)
