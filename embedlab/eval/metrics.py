"""Retrieval metrics with trec_eval semantics, matching what MTEB reports, in pure Python + numpy.

MTEB scores retrieval with pytrec_eval (``ndcg_cut``, ``map_cut``, ``recall``, ``P``) plus its own MRR@k.
Reimplementing them here removes the C-extension dependency at runtime and lets us return per-query
values, while ``tests/test_metrics.py`` checks every number against pytrec_eval itself.

trec_eval behaviours reproduced (each one verified against pytrec_eval):

- Evaluated queries are those with at least one judgment in ``qrels`` *and* an entry in ``run``. A run
  entry that is an empty dict still counts (every metric is 0); a query missing from the run, or whose
  qrels dict is empty, is skipped, so it does not enter the averages either.
- A query whose judgments are all <= 0 is evaluated and scores 0 on every metric.
- Ranking: score descending, ties broken by doc id descending (byte-wise ``strcmp``, which for UTF-8 is
  the same order as Python's ``str`` comparison). Scores are compared as float64.
- Relevant means relevance >= 1. nDCG gains are the relevance levels (<= 0 gains nothing), discounted by
  log2(rank + 1); the ideal DCG comes from all judged levels of the query, cut at k.
- P@k divides by k even when fewer than k documents were retrieved.
- MRR@k is 1 / rank of the first relevant document within the top k, else 0. MTEB computes it itself, but
  on the trec_eval ranking it equals pytrec_eval's ``recip_rank`` of the run truncated to k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embedlab.errors import ConfigError

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

DEFAULT_K = (1, 3, 5, 10, 100, 1000)
METRICS = ("ndcg", "map", "recall", "precision", "mrr")


def check_k_values(k_values: Sequence[int]) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in k_values)
    except (TypeError, ValueError):
        ks = ()
    if not ks or min(ks) < 1:
        # trec_eval rejects (and pytrec_eval may crash on) cutoffs below 1; fail early with a clear message.
        raise ConfigError(f"k_values must be a non-empty sequence of integers >= 1, got {list(k_values)}")
    return ks


def _ranked_gains(judged: dict[str, int], scores: dict[str, float], depth: int) -> np.ndarray:
    """Positive relevance levels laid out by rank (trec_eval order) over the top ``depth`` retrieved docs.

    Only the few positively judged docs are placed, each at rank = 1 + number of docs ranked above it, so
    the cost is one sort of the scores instead of a dictionary lookup for every retrieved doc.
    """
    gains = np.zeros(min(len(scores), depth))
    placed = [(doc, scores[doc], level) for doc, level in judged.items() if level > 0 and doc in scores]
    if not placed or gains.size == 0:
        return gains
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    ascending = np.sort(values)
    judged_values = np.array([value for _, value, _ in placed])
    upper = np.searchsorted(ascending, judged_values, side="right")
    above = values.size - upper
    tied = upper - np.searchsorted(ascending, judged_values, side="left") > 1
    if tied.any():
        # trec_eval breaks score ties by doc id, descending: tied docs with a larger id also rank above.
        ids = list(scores)
        for j in np.flatnonzero(tied).tolist():
            doc, value, _ = placed[j]
            above[j] += sum(ids[i] > doc for i in np.flatnonzero(values == value).tolist())
    for (_, _, level), rank in zip(placed, above.tolist(), strict=True):
        if rank < gains.size:
            gains[rank] = level
    return gains


def _query_metrics(judged: dict[str, int], scores: dict[str, float], ks: tuple[int, ...]) -> dict[str, float]:
    levels = np.fromiter(judged.values(), dtype=np.float64, count=len(judged))
    num_rel = int(np.count_nonzero(levels >= 1))
    out = dict.fromkeys((f"{m}_at_{k}" for k in ks for m in METRICS), 0.0)
    if num_rel == 0:
        return out  # trec_eval scores such a query 0 everywhere (the ideal DCG is 0 too)
    max_k = max(ks)
    gains = _ranked_gains(judged, scores, max_k)
    n = gains.size
    if n == 0:
        return out
    hits = (gains >= 1).astype(np.float64)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    cum_hits = np.cumsum(hits)
    cum_ap = np.cumsum(hits * cum_hits / ranks)  # precision at each relevant rank, summed
    dcg = np.cumsum(gains / np.log2(ranks + 1.0))
    ideal = np.sort(levels[levels > 0])[::-1][:max_k]
    idcg = np.cumsum(ideal / np.log2(np.arange(2, ideal.size + 2, dtype=np.float64)))
    first_hit = int(np.argmax(hits)) + 1 if cum_hits[-1] > 0 else None
    for k in ks:
        i = min(k, n) - 1
        out[f"ndcg_at_{k}"] = float(dcg[i] / idcg[min(k, idcg.size) - 1])
        out[f"map_at_{k}"] = float(cum_ap[i] / num_rel)
        out[f"recall_at_{k}"] = float(cum_hits[i] / num_rel)
        out[f"precision_at_{k}"] = float(cum_hits[i] / k)
        out[f"mrr_at_{k}"] = 1.0 / first_hit if first_hit is not None and first_hit <= k else 0.0
    return out


def per_query_metrics(qrels: Qrels, run: Run, k_values: Sequence[int] = DEFAULT_K) -> dict[str, dict[str, float]]:
    """query id -> {"ndcg_at_10": ..., "map_at_10": ..., "recall_at_10": ..., "precision_at_10": ...,
    "mrr_at_10": ...} for every k, over the queries pytrec_eval would evaluate (see the module docstring).

    Per-query values are what paired significance tests and error analysis need, which is why they are the
    primary output and the means are derived from them.
    """
    ks = check_k_values(k_values)
    return {qid: _query_metrics(qrels[qid], run[qid], ks) for qid in run if qrels.get(qid)}


def aggregate(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean over queries of each metric (how MTEB averages pytrec_eval's output); empty input gives {}."""
    if not per_query:
        return {}
    names = next(iter(per_query.values())).keys()
    return {name: float(np.mean([values[name] for values in per_query.values()])) for name in names}


def retrieval_metrics(
    qrels: Qrels, run: Run, k_values: Sequence[int] = DEFAULT_K
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(aggregate, per_query) in one call, the shape evaluation reports want."""
    per_query = per_query_metrics(qrels, run, k_values)
    return aggregate(per_query), per_query
