"""Candidate lists from a mined negatives file, scored by one or more teachers, as the scored-list training file.

Each list is [the query's first positive, its first N negatives] — rectangular, as a training batch needs; queries
mined short of N negatives are left out (and counted). Output lines (what `read_scored` reads):
  {"query_id", "query", "candidate_ids", "candidates", "scores", "teacher_scores": {teacher: [...]}}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedlab.data.training import read_jsonl
from embedlab.errors import ConfigError, DataFormatError
from embedlab.scoring.combine import combine_scores

log = logging.getLogger(__name__)


@dataclass
class CandidateLists:
    query_ids: list[str]
    queries: list[str]
    candidate_ids: list[list[str]]  # positive first
    skipped: int  # queries with fewer than N negatives

    def texts(self, corpus: dict[str, str]) -> list[list[str]]:
        return [[corpus[d] for d in row] for row in self.candidate_ids]


def read_mined_lists(path: str | Path, corpus: dict[str, str], num_negatives: int) -> CandidateLists:
    """Lists from `embedlab-mine`'s negatives.jsonl; unknown document ids are one error naming file and line."""
    if num_negatives < 1:
        raise ConfigError(f"num_negatives must be ≥ 1, got {num_negatives}")
    path = Path(path)
    out = CandidateLists([], [], [], 0)
    for lineno, rec in read_jsonl(path):
        for key in ("query_id", "query", "positive_ids", "negative_ids"):
            if key not in rec:
                raise DataFormatError(path, lineno, key, "missing")
        if not isinstance(rec["positive_ids"], list) or not rec["positive_ids"]:
            raise DataFormatError(path, lineno, "positive_ids", "needs at least one document id")
        ids = [rec["positive_ids"][0], *rec["negative_ids"][:num_negatives]]
        unknown = [d for d in ids if d not in corpus]
        if unknown:
            raise DataFormatError(path, lineno, "negative_ids", f"document ids not in the corpus: {unknown[:3]}")
        if len(ids) < num_negatives + 1:
            out.skipped += 1
            continue
        out.query_ids.append(str(rec["query_id"]))
        out.queries.append(rec["query"])
        out.candidate_ids.append(ids)
    if not out.query_ids:
        raise DataFormatError(path, None, "negative_ids", f"no query has {num_negatives} negatives")
    return out


def score_lists(
    lists: CandidateLists, corpus: dict[str, str], teachers: list[tuple[object, float]], normalize: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(combined soft labels [Q, C], raw scores per teacher name)."""
    if not teachers:
        raise ConfigError("no teacher to score with: choose teacher_scores=mpnet, reranker or mpnet_reranker")
    texts = lists.texts(corpus)
    raw = {}
    for scorer, _ in teachers:
        log.info("scoring %d lists × %d candidates with %s", len(texts), len(texts[0]), scorer.name)
        raw[scorer.name] = scorer.score(lists.queries, texts)
    combined = combine_scores(list(raw.values()), [w for _, w in teachers], normalize)
    return combined, raw


def scored_records(
    lists: CandidateLists, corpus: dict[str, str], combined: np.ndarray, raw: dict[str, np.ndarray]
) -> list[dict]:
    return [
        {
            "query_id": qid,
            "query": query,
            "candidate_ids": ids,
            "candidates": [corpus[d] for d in ids],
            "scores": [float(s) for s in combined[i]],  # unrounded: a flat reranker list z-scores to large values
            "teacher_scores": {name: [float(s) for s in scores[i]] for name, scores in raw.items()},
        }
        for i, (qid, query, ids) in enumerate(zip(lists.query_ids, lists.queries, lists.candidate_ids, strict=True))
    ]
