"""Exact nearest-neighbour search with faiss: inner product over floats, Hamming over packed bits.

Exact inner-product results come in one canonical order — score descending, then corpus row ascending — whether
the corpus sits in one flat index in RAM (`search_inner_product`) or is read block by block from a memory-mapped
store (`search_blocked`). faiss alone leaves the order of equal scores to its heap, so which of several tied
documents makes the k-th place would depend on how the corpus was cut; with the canonical order the two paths
return the same ids and scores, ties included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import faiss
import numpy as np

from embedlab.eval.gpu_plan import GPU_MAX_K, gpu_count, to_gpus, use_gpus
from embedlab.eval.shards import RowStack, row_blocks

log = logging.getLogger(__name__)
DEFAULT_BLOCK_ROWS = 262_144  # ≈ 400 MB of float32 at 384 dims; a multiple of faiss' 1024-row BLAS tile

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (queries, k) -> (scores, rows), faiss-style


def canonical_top_k(search: SearchFn, queries: np.ndarray, n_docs: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of `search` over `n_docs` documents in canonical order (score desc, row asc), [Q, k] each.

    One extra result per query shows whether equal scores straddle the k-th place; only those queries are searched
    again, deeper, until every document tied with the k-th score is in view (then the lowest rows win)."""
    k = min(k, n_docs)
    if k == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    depth = min(k + 1, n_docs)
    scores, rows = search(queries, depth)
    scores, rows = _by_score_then_row(scores, rows)
    out_scores, out_rows = scores[:, :k].copy(), rows[:, :k].copy()
    open_rows = np.flatnonzero(scores[:, depth - 1] == scores[:, k - 1]) if depth > k else np.array([], int)
    while open_rows.size:  # ties cross the boundary: look deeper for these queries only
        depth = min(2 * depth, n_docs)
        s, r = _by_score_then_row(*search(queries[open_rows], depth))
        out_scores[open_rows], out_rows[open_rows] = s[:, :k], r[:, :k]
        still = (s[:, depth - 1] == s[:, k - 1]) & (depth < n_docs)
        open_rows = open_rows[still]
    return out_scores, out_rows


def _by_score_then_row(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's results sorted by score descending, then row ascending; faiss' −1 padding goes last."""
    rows = rows.astype(np.int64, copy=False)
    key_rows = np.where(rows < 0, np.iinfo(np.int64).max, rows)
    key_scores = np.where(rows < 0, np.inf, -scores)
    order = np.lexsort((key_rows, key_scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def search_inner_product(
    queries: np.ndarray, docs: np.ndarray, k: int, use_gpu: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k documents by inner product (cosine for normalised vectors): scores and indices, [Q, k] each.

    Exact (flat) search, canonical order; k is clipped to the corpus size. The corpus is copied into one flat index
    in RAM (see `search_blocked` for a corpus larger than that); it is sharded over every GPU faiss sees, if any,
    when k allows."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    docs = np.ascontiguousarray(docs, dtype=np.float32)
    index: faiss.Index = faiss.IndexFlatIP(docs.shape[1])
    on_gpus = use_gpus("exact", 0 if use_gpu is False else gpu_count(), min(k, len(docs)) + 1)
    if on_gpus:
        index = to_gpus(index)
    index.add(docs)

    def search(q: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        if on_gpus and depth > GPU_MAX_K:  # ties deeper than a GPU index returns: resolved on the CPU
            return faiss.knn(q, docs, depth, metric=faiss.METRIC_INNER_PRODUCT)
        return index.search(q, depth)

    return canonical_top_k(search, queries, len(docs), k)


def search_blocked(
    queries: np.ndarray, store: np.ndarray | RowStack, k: int, block_rows: int = DEFAULT_BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product over a corpus read `block_rows` rows at a time: the same ids and scores as
    `search_inner_product`, in bounded memory.

    `store` is any [N, dim] float32 or float16 array, typically memory-mapped (`np.load(path, mmap_mode="r")`, an
    embedding-cache entry, `np.memmap`), or a sharded cache entry (`RowStack`, walked shard by shard in its stored
    order, rows reported as the collection's): float32 blocks are searched in place (their pages stay file-backed
    and reclaimable), float16 blocks are converted one at a time. Resident beyond the store's pages: one block, the
    queries and the running top-k."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be ≥ 1, got {block_rows}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n_docs, n_queries = store.shape[0], len(queries)
    k = min(k, n_docs)
    best_scores = np.full((n_queries, 0), -np.inf, np.float32)
    best_rows = np.zeros((n_queries, 0), np.int64)
    for ids, block in row_blocks(store, block_rows):
        block = np.ascontiguousarray(block, dtype=np.float32)
        # ties are broken by the collection's row, so the block's search reports those rows
        scores, rows = canonical_top_k(_knn_over(block, ids), queries, len(block), k)
        best_scores, best_rows = _by_score_then_row(
            np.concatenate([best_scores, scores], 1), np.concatenate([best_rows, rows], 1)
        )
        best_scores, best_rows = best_scores[:, :k], best_rows[:, :k]
        del block  # a float16 block's float32 copy goes before the next one is made
    return best_scores, best_rows


def _knn_over(block: np.ndarray, ids: np.ndarray) -> SearchFn:
    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = faiss.knn(q, block, k, metric=faiss.METRIC_INNER_PRODUCT)
        return scores, np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)

    return search


def search_hamming(query_bits: np.ndarray, doc_bits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k documents by Hamming distance over packed bits (uint8 [N, dim/8]); distances ascend."""
    k = min(k, doc_bits.shape[0])
    index = faiss.IndexBinaryFlat(doc_bits.shape[1] * 8)
    index.add(np.ascontiguousarray(doc_bits, dtype=np.uint8))
    return index.search(np.ascontiguousarray(query_bits, dtype=np.uint8), k)
