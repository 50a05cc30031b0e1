"""Mine hard negatives for a BEIR split: encode, retrieve, select; records for training plus diagnostics.

The false-negative rate needs positives the selection does not know about. Where a query has several judged
documents, the diagnostic pass keeps only the first as "the positive" and hides the others, as an incompletely
labelled training set would; a kept negative that is a hidden positive is a false negative. The training records
themselves always use every known positive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from embedlab.data.beir import RetrievalData
from embedlab.errors import ConfigError
from embedlab.eval.ann import SearchSettings
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.shards import RowStack
from embedlab.mining.candidates import CandidateTable, flag_candidates, retrieve_with_recall
from embedlab.mining.select import FILTERS, Selection, SelectionConfig, select_negatives

log = logging.getLogger(__name__)


@dataclass
class MiningResult:
    records: list[dict]  # one per query: the training file's lines
    counts: dict[str, int]  # what each filter dropped, what was left, what was sampled
    diagnostics: dict  # false negatives under hidden positives
    scores: dict[str, np.ndarray]  # positive / kept / dropped-by-margin scores, for the histogram
    search: dict | None = None  # how candidates were retrieved: method, and an approximate one's recall@top_k


def query_positives(data: RetrievalData) -> tuple[list[str], list[list[int]]]:
    """Queries with at least one judged-relevant document in the corpus, and those documents' corpus rows."""
    row = {d: i for i, d in enumerate(data.corpus)}
    ids, positives = [], []
    for qid, judged in data.qrels.items():
        rows = [row[d] for d, rel in judged.items() if rel > 0 and d in row]
        if rows:
            ids.append(qid)
            positives.append(rows)
    return ids, positives


def _records(
    query_ids: list[str], data: RetrievalData, doc_ids: list[str], table: CandidateTable, sel: Selection
) -> list[dict]:
    records = []
    for i, qid in enumerate(query_ids):
        cols = sel.negatives[i][sel.negatives[i] >= 0]
        rows = table.index[i, cols]
        positives = [d for d, rel in data.qrels[qid].items() if rel > 0 and d in data.corpus]
        records.append(
            {
                "query_id": qid,
                "query": data.queries[qid],
                "positive_ids": positives,
                "positive_scores": [round(float(s), 6) for s in table.positive_scores[i]],
                "negative_ids": [doc_ids[r] for r in rows],
                "negative_scores": [round(float(s), 6) for s in table.scores[i, cols]],
            }
        )
    return records


def false_negative_diagnostics(
    retrieved: tuple[np.ndarray, np.ndarray],
    q_emb: np.ndarray,
    d_emb: np.ndarray,
    doc_texts: list[str],
    positives: list[list[int]],
    cfg: SelectionConfig,
) -> dict:
    """Select again with only each multi-positive query's first positive known; count hidden positives kept."""
    multi = [i for i, p in enumerate(positives) if len(p) > 1]
    if not multi:
        return {"queries": 0, "note": "no query has more than one judged document: no false-negative estimate"}
    scores, index = retrieved
    table = flag_candidates(
        (scores[multi], index[multi]), q_emb[multi], d_emb, doc_texts, [positives[i][:1] for i in multi]
    )
    sel = select_negatives(table.scores, table.is_positive, table.is_duplicate, table.positive_score, cfg)
    hidden = np.zeros_like(table.index, dtype=bool)
    for j, i in enumerate(multi):
        hidden[j] = np.isin(table.index[j], positives[i][1:])
    sampled = sel.sampled()
    false_neg, n_sampled = int((sampled & hidden).sum()), int(sampled.sum())
    return {
        "queries": len(multi),
        "hidden_positives": sum(len(positives[i]) - 1 for i in multi),
        "hidden_positives_retrieved": int(hidden.sum()),
        "hidden_dropped_by": {name: int((sel.dropped[name] & hidden).sum()) for name in FILTERS},
        "false_negatives": false_neg,
        "negatives_sampled": n_sampled,
        "false_negative_rate": false_neg / n_sampled if n_sampled else 0.0,
    }


def mining_vectors(
    data: RetrievalData, query_encoder, doc_encoder, batch_size: int, cache: EmbeddingCache | None
) -> tuple[np.ndarray | RowStack, np.ndarray | RowStack]:
    """(query vectors, document vectors) of what `mine` mines: all that ranks helping rank 0 take part in."""
    query_ids, _ = query_positives(data)
    texts = [data.queries[q] for q in query_ids]
    q_emb = encode_cached(query_encoder, texts, kind="query", cache=cache, batch_size=batch_size)
    d_emb = encode_cached(doc_encoder, list(data.corpus.values()), kind="document", cache=cache, batch_size=batch_size)
    return q_emb, d_emb


def mine(
    data: RetrievalData,
    query_encoder,
    doc_encoder,
    cfg: SelectionConfig,
    *,
    top_k: int = 100,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    search: SearchSettings | None = None,
) -> MiningResult:
    """Negatives for every query of `data` with a judged document in its corpus (see the module docstring);
    candidates are searched as `search` says (exact by default)."""
    cfg.check()
    search = search or SearchSettings()
    search.check()
    query_ids, positives = query_positives(data)
    if not query_ids:
        raise ConfigError(f"{data.name}: no query has a judged-relevant document in the corpus; nothing to mine")
    doc_ids = list(data.corpus)
    doc_texts = [data.corpus[d] for d in doc_ids]
    q_emb, d_emb = mining_vectors(data, query_encoder, doc_encoder, batch_size, cache)
    scores, rows, recall = retrieve_with_recall(q_emb, d_emb, top_k, search)
    retrieved = (scores, rows)
    table = flag_candidates(retrieved, q_emb, d_emb, doc_texts, positives)
    sel = select_negatives(table.scores, table.is_positive, table.is_duplicate, table.positive_score, cfg)
    counts = {"queries": len(query_ids), "candidates": int(np.isfinite(table.scores).sum()), **sel.counts()}
    counts["queries_short"] = int((sel.negatives < 0).any(1).sum())  # fewer than num_negatives left
    sampled = sel.sampled()
    return MiningResult(
        records=_records(query_ids, data, doc_ids, table, sel),
        counts=counts,
        diagnostics=false_negative_diagnostics(retrieved, q_emb, d_emb, doc_texts, positives, cfg),
        scores={
            "positives": np.concatenate(table.positive_scores),
            "sampled negatives": table.scores[sampled],
            "dropped by margin": table.scores[sel.dropped["margin"]],
        },
        search={"method": search.method, **({"recall_at_top_k": recall} if recall is not None else {})},
    )


def selection_from_config(knobs: dict) -> tuple[SelectionConfig, int]:
    """(selection rules, top_k) from the `mining` config group (its training switches aside), checked."""
    knobs = {k: v for k, v in knobs.items() if k not in ("enabled", "refresh_every_n_steps")}
    top_k = int(knobs.pop("top_k", 100))
    try:
        cfg = SelectionConfig(**knobs)
    except TypeError as e:
        raise ConfigError(f"mining: {e}") from None
    cfg.check()
    if top_k < 1:
        raise ConfigError(f"mining.top_k must be ≥ 1, got {top_k}")
    if cfg.max_rank > top_k:
        raise ConfigError(f"mining.max_rank ({cfg.max_rank}) is beyond mining.top_k ({top_k}): raise top_k")
    return cfg, top_k
