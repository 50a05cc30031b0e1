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

from embedlab.data.lines import first_seen, identifier, read_jsonl, string, strings
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
    seen: dict[str, int] = {}
    for lineno, rec in read_jsonl(path):
        qid = identifier(path, lineno, "query_id", rec.get("query_id"))
        first_seen(seen, path, lineno, "query_id", qid)
        query = string(path, lineno, "query", rec.get("query"))
        positives = strings(path, lineno, "positive_ids", rec.get("positive_ids"), min_len=1)
        ids = [positives[0], *strings(path, lineno, "negative_ids", rec.get("negative_ids"))[:num_negatives]]
        unknown = [d for d in ids if d not in corpus]
        if unknown:
            raise DataFormatError(path, lineno, "negative_ids", f"document ids not in the corpus: {unknown[:3]}")
        if len(ids) < num_negatives + 1:
            out.skipped += 1
            continue
        out.query_ids.append(qid)
        out.queries.append(query)
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
