"""How evaluation and mining search a corpus: exact (flat, in RAM), exact in blocks over the memory-mapped store,
or an approximate faiss index (IVF-Flat, IVF-PQ, HNSW) whose recall@k against exact search is measured on the very
queries it served, so a metric computed on approximate results says how much of exact retrieval it saw.

The indexes come from faiss' index factory; an approximate index is trained on a sample and filled block by block,
so the corpus is never copied whole as float32 on the way in (IVF-Flat and HNSW then hold it, IVF-PQ its codes).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import faiss
import numpy as np

from embedlab.errors import ConfigError
from embedlab.eval.gpu_plan import gpu_count, to_gpus, use_gpus
from embedlab.eval.search import DEFAULT_BLOCK_ROWS, search_blocked, search_inner_product

log = logging.getLogger(__name__)
EXACT_METHODS = ("exact", "blocked")
APPROXIMATE_METHODS = ("ivf_flat", "ivf_pq", "hnsw")
METHODS = EXACT_METHODS + APPROXIMATE_METHODS


@dataclass
class SearchSettings:
    method: str = "exact"  # exact (flat, in RAM) | blocked (exact, corpus in blocks) | ivf_flat | ivf_pq | hnsw
    block_rows: int = DEFAULT_BLOCK_ROWS  # blocked, and filling an index: corpus rows per block held in RAM
    nlist: int = 0  # ivf_*: inverted lists (0 = 4·√corpus size, at most corpus size / 39)
    nprobe: int = 32  # ivf_*: lists visited per query (more = higher recall, slower)
    pq_m: int = 32  # ivf_pq: sub-vectors per code (must divide the dim); code size = pq_m × pq_nbits bits
    pq_nbits: int = 8  # ivf_pq: bits per sub-vector code
    hnsw_m: int = 32  # hnsw: neighbours per node
    ef_construction: int = 200  # hnsw: candidates kept while inserting
    ef_search: int = 256  # hnsw: candidates kept while searching (faiss uses at least k)
    train_rows: int = 262_144  # ivf_*: corpus rows sampled to train the quantizers (0 = the whole corpus)
    gpu: bool = True  # exact / ivf_flat: shard the index over every GPU faiss sees (no effect with faiss-cpu)
    seed: int = 0  # the training sample's seed

    def check(self) -> None:
        """One error per impossible setting, before any text is encoded."""
        if self.method not in METHODS:
            raise ConfigError(f"search.method {self.method!r} is unknown; choose from {', '.join(METHODS)}")
        for name, minimum in (
            ("block_rows", 1), ("nlist", 0), ("nprobe", 1), ("pq_m", 1), ("pq_nbits", 1), ("hnsw_m", 2),
            ("ef_construction", 1), ("ef_search", 1), ("train_rows", 0), ("seed", 0),
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"search.{name} must be an integer >= {minimum}, got {value!r}")
        if not isinstance(self.gpu, bool):
            raise ConfigError(f"search.gpu must be true or false, got {self.gpu!r}")
        if self.pq_nbits > 16:
            raise ConfigError(f"search.pq_nbits must be at most 16, got {self.pq_nbits}")

    def check_dim(self, dim: int) -> None:
        if self.method == "ivf_pq" and dim % self.pq_m:
            raise ConfigError(f"search.pq_m ({self.pq_m}) must divide the embedding dim ({dim}) for ivf_pq")


def settings_from(knobs: dict | None) -> SearchSettings:
    """SearchSettings from a config mapping (`eval.search`, mining's `search`), checked; unknown keys are errors."""
    try:
        settings = SearchSettings(**(knobs or {}))
    except TypeError as e:
        raise ConfigError(f"search: {e}") from None
    settings.check()
    return settings


@dataclass
class SearchOutcome:
    scores: np.ndarray  # [Q, k] inner products, best first
    rows: np.ndarray  # [Q, k] corpus rows, −1 where an approximate index found fewer than k
    recall: float | None  # approximate methods: mean recall@k against exact search; None when exact
    seconds: dict[str, float]  # build / search (and exact, for the recall) wall times


def search(queries: np.ndarray, docs: np.ndarray, k: int, settings: SearchSettings | None = None) -> SearchOutcome:
    """Top-k corpus rows per query by inner product, with `settings.method`; k is clipped to the corpus size."""
    s = settings or SearchSettings()
    s.check()
    s.check_dim(docs.shape[1])
    k = min(k, len(docs))
    started = time.perf_counter()
    if s.method == "exact":
        scores, rows = search_inner_product(queries, docs, k, use_gpu=None if s.gpu else False)
        return SearchOutcome(scores, rows, None, {"search": time.perf_counter() - started})
    if s.method == "blocked":
        scores, rows = search_blocked(queries, docs, k, s.block_rows)
        return SearchOutcome(scores, rows, None, {"search": time.perf_counter() - started})
    index = build_index(docs, s, k)
    built = time.perf_counter()
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    searched = time.perf_counter()
    _, exact_rows = search_blocked(queries, docs, k, s.block_rows)
    recall = recall_at_k(rows, exact_rows)
    seconds = {"build": built - started, "search": searched - built, "exact": time.perf_counter() - searched}
    log.info("%s search: recall@%d %.4f against exact (%s)", s.method, k, recall, _fmt(seconds))
    return SearchOutcome(scores, rows.astype(np.int64), recall, seconds)


def _fmt(seconds: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}s" for name, value in seconds.items())


def factory_string(method: str, n_docs: int, dim: int, s: SearchSettings) -> str:
    """The faiss index-factory description of an approximate method for a corpus of `n_docs` vectors."""
    if method == "hnsw":
        return f"HNSW{s.hnsw_m},Flat"
    nlist = ivf_lists(n_docs, s.nlist)
    if method == "ivf_flat":
        return f"IVF{nlist},Flat"
    if method == "ivf_pq":
        return f"IVF{nlist},PQ{s.pq_m}x{s.pq_nbits}"
    raise ConfigError(f"search.method {method!r} has no faiss index; approximate ones: {APPROXIMATE_METHODS}")


def ivf_lists(n_docs: int, nlist: int) -> int:
    """`nlist`, or 4·√N when 0; never more lists than the corpus can train (faiss asks ≥ 39 points per list)."""
    wanted = nlist or int(4 * math.sqrt(n_docs))
    return max(1, min(wanted, n_docs // 39 or 1))


def build_index(docs: np.ndarray, s: SearchSettings, k: int) -> faiss.Index:
    """Train (on a seeded sample of rows) and fill an approximate index from `docs`, `s.block_rows` at a time;
    IVF-Flat moves to the GPUs when `k` allows."""
    n_docs, dim = docs.shape
    description = factory_string(s.method, n_docs, dim, s)
    index = faiss.index_factory(dim, description, faiss.METRIC_INNER_PRODUCT)
    if s.method == "hnsw":
        index.hnsw.efConstruction = s.ef_construction
        index.hnsw.efSearch = s.ef_search
    if not index.is_trained:
        index.train(_training_sample(docs, s.train_rows, s.seed))
    if s.method != "hnsw":
        faiss.extract_index_ivf(index).nprobe = s.nprobe
        if use_gpus(s.method, gpu_count(), k, s.gpu):
            index = to_gpus(index)
    for start in range(0, n_docs, s.block_rows):
        index.add(np.ascontiguousarray(docs[start : start + s.block_rows], dtype=np.float32))
    log.info("built %s over %d x %d", description, n_docs, dim)
    return index


def _training_sample(docs: np.ndarray, rows: int, seed: int) -> np.ndarray:
    if rows == 0 or rows >= len(docs):
        return np.ascontiguousarray(docs, dtype=np.float32)
    picked = np.sort(np.random.default_rng(seed).choice(len(docs), rows, replace=False))  # sorted: sequential reads
    return np.ascontiguousarray(docs[picked], dtype=np.float32)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / |exact| for [Q, k] row arrays (−1 = nothing found, never counted)."""
    per_query = []
    for got, truth in zip(found, exact, strict=True):
        truth = truth[truth >= 0]
        if len(truth):
            per_query.append(len(np.intersect1d(got[got >= 0], truth)) / len(truth))
    return float(np.mean(per_query)) if per_query else 1.0
