"""Retrieval evaluation: encode, search, score — over a grid of Matryoshka dims × storage precisions.

One run encodes the corpus and the queries once (through the embedding cache), then evaluates every
(dim, precision) cell from those vectors. Queries may come from a different encoder than documents
(asymmetric mode, as in LEAF: documents by the teacher, queries by the student).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from embedlab.data import RetrievalData
from embedlab.errors import ConfigError
from embedlab.eval import quantize, search
from embedlab.eval.ann import SearchSettings
from embedlab.eval.ann import search as search_corpus
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.metrics import DEFAULT_K, retrieval_metrics
from embedlab.eval.shards import RowStack

log = logging.getLogger(__name__)


@dataclass
class RetrievalSettings:
    top_k: int = 1000  # documents retrieved per query (recall@1000 needs 1000)
    k_values: tuple[int, ...] = DEFAULT_K  # cut-offs for every metric
    dims: list[int | None] = field(default_factory=lambda: [None])  # Matryoshka dims; None = full size
    precisions: list[str] = field(default_factory=lambda: ["float32"])  # float32 | int8 | binary
    binary_rescore: int = 4  # binary: rescore top k×this by float query · ±1 doc; 0 = Hamming order only
    batch_size: int = 64  # encoding batch size
    ignore_identical_ids: bool = False  # drop a retrieved doc whose id equals the query id (BEIR, ArguAna)
    search: SearchSettings = field(default_factory=SearchSettings)  # float32 / int8 cells: exact, blocked or ANN


@dataclass
class RetrievalResult:
    rows: list[dict]  # one per (dim, precision): {"dim", "precision", **metrics}
    per_query: dict[str, dict[str, float]]  # of the first cell (full dim, first precision)
    run: dict[str, dict[str, float]]  # ranked docs of the first cell, for run files


def _search_cell(
    q: np.ndarray, d: np.ndarray, precision: str, k: int, rescore: int, how: SearchSettings
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(scores, rows, recall of an approximate search against exact) for one cell; binary cells search exactly."""
    if precision in ("float32", "int8"):
        # int8: documents stored as int8 (calibrated on the corpus itself); queries stay float, as in asymmetric
        # scalar quantization: the score is q · dequantize(d).
        outcome = search_corpus(q, d if precision == "float32" else quantize.stored(d, "int8"), k, how)
        return outcome.scores, outcome.rows, outcome.recall
    dim = d.shape[1]
    d_bits = quantize.to_binary(d)
    if rescore <= 0:
        dist, idx = search.search_hamming(quantize.to_binary(q), d_bits, k)
        return -dist.astype(np.float32), idx, None
    _, cand = search.search_hamming(quantize.to_binary(q), d_bits, k * rescore)
    signs = quantize.unpack_signs(d_bits, dim)
    scores = np.einsum("qd,qkd->qk", q, signs[cand])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(cand, order, 1), None


def _to_run(
    scores: np.ndarray, idx: np.ndarray, qids: list[str], dids: list[str], k: int, ignore_identical: bool
) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qi, qid in enumerate(qids):
        ranked: dict[str, float] = {}
        for score, di in zip(scores[qi].tolist(), idx[qi].tolist(), strict=True):
            if di < 0:  # faiss pads with -1 when fewer than k exist
                continue
            did = dids[di]
            if ignore_identical and did == qid:
                continue
            ranked[did] = score
            if len(ranked) == k:
                break
        run[qid] = ranked
    return run


def check_same_dim(query_encoder, doc_encoder) -> None:
    """Asymmetric retrieval compares query and document vectors directly: their sizes must match."""
    if query_encoder is not None and query_encoder.dim != doc_encoder.dim:
        raise ConfigError(
            f"asymmetric retrieval needs equal dims: queries {query_encoder.dim} "
            f"({query_encoder.name}) vs documents {doc_encoder.dim} ({doc_encoder.name})"
        )


def encode_task(
    data: RetrievalData, doc_encoder, query_encoder, batch_size: int, cache: EmbeddingCache | None
) -> tuple[list[str], list[str], np.ndarray | RowStack, np.ndarray | RowStack]:
    """(document ids, query ids, their vectors): a task's encodings, all a rank that does not search takes part in."""
    dids, qids = list(data.corpus), [q for q in data.qrels if q in data.queries]
    corpus, texts = [data.corpus[d] for d in dids], [data.queries[q] for q in qids]
    docs = encode_cached(doc_encoder, corpus, kind="document", cache=cache, batch_size=batch_size)
    queries = encode_cached(query_encoder, texts, kind="query", cache=cache, batch_size=batch_size, task=data.name)
    return dids, qids, docs, queries


def evaluate_retrieval(
    data: RetrievalData,
    doc_encoder,
    query_encoder=None,
    settings: RetrievalSettings | None = None,
    cache: EmbeddingCache | None = None,
) -> RetrievalResult:
    """Evaluate one retrieval task. `query_encoder` defaults to `doc_encoder` (symmetric)."""
    s = settings or RetrievalSettings()
    query_encoder = query_encoder or doc_encoder
    quantize.check_precisions(s.precisions)
    quantize.check_dims(s.dims, doc_encoder.dim)  # before encoding, not after
    s.search.check()
    for dim in quantize.grid_dims(s.dims, doc_encoder.dim):
        s.search.check_dim(dim or doc_encoder.dim)
    check_same_dim(query_encoder, doc_encoder)
    dids, qids, docs, queries = encode_task(data, doc_encoder, query_encoder, s.batch_size, cache)
    k = s.top_k + (1 if s.ignore_identical_ids else 0)  # one spare slot for the dropped self-match
    rows: list[dict] = []
    first: RetrievalResult | None = None
    for dim in quantize.grid_dims(s.dims, docs.shape[1]):
        d, q = quantize.truncate(np.asarray(docs), dim), quantize.truncate(np.asarray(queries), dim)
        for precision in s.precisions:
            scores, idx, recall = _search_cell(q, d, precision, k, s.binary_rescore, s.search)
            run = _to_run(scores, idx, qids, dids, s.top_k, s.ignore_identical_ids)
            metrics, per_query = retrieval_metrics(data.qrels, run, s.k_values)
            if recall is not None:  # how much of exact retrieval the approximate index found, beside the metrics
                metrics[f"search_recall_at_{min(k, len(dids))}"] = recall
            rows.append({"dim": dim or docs.shape[1], "precision": precision, **metrics})
            if first is None:
                first = RetrievalResult(rows, per_query, run)
            log.info(
                "%s dim=%s %s: nDCG@10 %.4f",
                data.name,
                dim or docs.shape[1],
                precision,
                metrics.get("ndcg_at_10", float("nan")),
            )
    assert first is not None, "dims and precisions must be non-empty"
    return first
