"""Exact nearest-neighbour search with faiss: inner product over floats, Hamming over packed bits."""

from __future__ import annotations

import functools
import logging

import faiss
import numpy as np

log = logging.getLogger(__name__)
GPU_MAX_K = 2048  # faiss' GPU flat index refuses larger k


@functools.cache
def gpu_available() -> bool:
    """True when this faiss build has GPU kernels and sees a GPU (faiss-gpu on a CUDA machine)."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@functools.cache
def _gpu_resources():  # one per process: creating them costs a CUDA context
    return faiss.StandardGpuResources()


def search_inner_product(
    queries: np.ndarray, docs: np.ndarray, k: int, use_gpu: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k documents by inner product (cosine for normalised vectors): scores and indices, [Q, k] each.

    Exact (flat) search; k is clipped to the corpus size. Uses a GPU index when available and k allows.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    docs = np.ascontiguousarray(docs, dtype=np.float32)
    k = min(k, docs.shape[0])
    index = faiss.IndexFlatIP(docs.shape[1])
    if (gpu_available() if use_gpu is None else use_gpu) and k <= GPU_MAX_K:
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    index.add(docs)
    return index.search(queries, k)


def search_hamming(query_bits: np.ndarray, doc_bits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k documents by Hamming distance over packed bits (uint8 [N, dim/8]); distances ascend."""
    k = min(k, doc_bits.shape[0])
    index = faiss.IndexBinaryFlat(doc_bits.shape[1] * 8)
    index.add(np.ascontiguousarray(doc_bits, dtype=np.uint8))
    return index.search(np.ascontiguousarray(query_bits, dtype=np.uint8), k)
