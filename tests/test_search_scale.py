"""Bounded-memory and approximate search (embedlab/eval/search.py, ann.py, gpu_plan.py): blocked exact search over
a memory-mapped store returns the flat index's ids and scores, ties included; approximate indexes report their
recall against exact; the GPU choice; and the setting wired through evaluation and mining."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from fakes import FakeEncoder, at, tiny_task

from embedlab.config.build import compose, eval_settings, search_settings
from embedlab.data import RetrievalData
from embedlab.errors import ConfigError
from embedlab.eval import gpu_plan, search
from embedlab.eval.ann import SearchSettings, factory_string, ivf_lists, recall_at_k, settings_from
from embedlab.eval.ann import search as search_corpus
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.retrieval import RetrievalSettings, evaluate_retrieval
from embedlab.eval.runner import EvalSettings, check_settings, evaluate_tasks
from embedlab.eval.search import search_blocked, search_inner_product
from embedlab.mining.mine import mine
from embedlab.mining.select import SelectionConfig


def tied_corpus(n_docs: int, n_distinct: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small-integer vectors (every inner product exact in float32) drawn from few distinct rows: many exact ties,
    which faiss' heap alone leaves in an order that depends on how the corpus was cut."""
    rng = np.random.default_rng(seed)
    distinct = rng.integers(-2, 3, (n_distinct, 16)).astype(np.float32)
    return distinct[rng.integers(0, n_distinct, n_docs)], rng.integers(-2, 3, (n_queries, 16)).astype(np.float32)


def canonical_reference(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force by the documented order: score descending, then row ascending."""
    scores = queries @ docs.T
    rows = np.broadcast_to(np.arange(len(docs)), scores.shape)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize(
    ("n_docs", "n_queries", "k", "block_rows"),
    [
        (3000, 5, 100, 700),  # few queries: faiss' per-query path
        (3000, 40, 100, 1024),  # ≥ 20 queries: faiss' BLAS path
        (2000, 25, 300, 64),  # k larger than a block
        (150, 7, 400, 32),  # k larger than the corpus: clipped, every row returned
        (1000, 3, 10, 1000),  # one block
    ],
)
def test_blocked_equals_flat_and_brute_force_with_ties(n_docs, n_queries, k, block_rows) -> None:
    docs, queries = tied_corpus(n_docs, 40, n_queries)
    flat = search_inner_product(queries, docs, k, use_gpu=False)
    blocked = search_blocked(queries, docs, k, block_rows)
    reference = canonical_reference(queries, docs, k)
    assert flat[1].shape == (n_queries, min(k, n_docs))
    np.testing.assert_array_equal(blocked[1], flat[1])
    np.testing.assert_array_equal(blocked[0], flat[0])
    np.testing.assert_array_equal(flat[1], reference[1])
    np.testing.assert_array_equal(flat[0], reference[0])


def test_blocked_equals_flat_bitwise_on_unit_vectors() -> None:
    rng = np.random.default_rng(1)
    docs = rng.standard_normal((5000, 48)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:30] + 0.05 * rng.standard_normal((30, 48)).astype(np.float32)
    flat = search_inner_product(queries, docs, 50, use_gpu=False)
    for block_rows in (333, 1024, 4999):
        blocked = search_blocked(queries, docs, 50, block_rows)
        np.testing.assert_array_equal(blocked[1], flat[1])
        np.testing.assert_array_equal(blocked[0], flat[0])
    assert (flat[1][:, 0] == np.arange(30)).all()  # each query's own document first


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_blocked_reads_a_memory_mapped_store(tmp_path, dtype) -> None:
    docs, queries = tied_corpus(2500, 60, 9, seed=2)
    docs = docs / 4  # quarters: still exact in float16
    path = tmp_path / "store.npy"
    store = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=docs.shape)
    store[:] = docs
    store.flush()
    del store
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap) and mapped.dtype == dtype
    blocked = search_blocked(queries, mapped, 120, block_rows=256)
    flat = search_inner_product(queries, np.asarray(mapped, dtype=np.float32), 120, use_gpu=False)
    np.testing.assert_array_equal(blocked[1], flat[1])
    np.testing.assert_array_equal(blocked[0], flat[0])


def test_blocked_rejects_an_empty_block() -> None:
    with pytest.raises(ValueError, match="block_rows"):
        search_blocked(np.zeros((1, 2), np.float32), np.zeros((3, 2), np.float32), 1, block_rows=0)


# ------------------------------------------------------------------------------------------------ approximate
def test_recall_by_hand() -> None:
    found = np.array([[1, 2, 3], [4, 5, -1], [7, 8, 9]])
    exact = np.array([[1, 2, 9], [6, 5, 4], [9, 8, 7]])
    # 2/3 (3 is wrong), 2/3 (the padding never counts), 3/3 (order does not matter)
    assert recall_at_k(found, exact) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert recall_at_k(np.array([[5, 6]]), np.array([[-1, -1]])) == 1.0  # nothing to find


def unit_corpus(n: int, dim: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    docs = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim))  # clustered, as embeddings are
    docs = (docs / np.linalg.norm(docs, axis=1, keepdims=True)).astype(np.float32)
    return docs, docs[rng.choice(n, 40, replace=False)]


@pytest.mark.parametrize(
    "settings",
    [
        SearchSettings(method="ivf_flat", nlist=16, nprobe=2),
        SearchSettings(method="ivf_pq", nlist=8, nprobe=8, pq_m=8, pq_nbits=4),
        SearchSettings(method="hnsw", hnsw_m=8, ef_construction=40, ef_search=20),
    ],
    ids=lambda s: s.method,
)
def test_approximate_recall_is_measured_against_exact(settings: SearchSettings) -> None:
    docs, queries = unit_corpus(3000, 32)
    outcome = search_corpus(queries, docs, 50, settings)
    _, exact_rows = search_blocked(queries, docs, 50)
    overlap = [len(set(a) & set(b)) / 50 for a, b in zip(outcome.rows.tolist(), exact_rows.tolist(), strict=True)]
    assert outcome.recall == pytest.approx(np.mean(overlap))
    assert 0.2 < outcome.recall <= 1.0
    assert set(outcome.seconds) == {"build", "search", "exact"}


def test_more_probes_do_not_lose_recall() -> None:
    docs, queries = unit_corpus(3000, 32)
    few = search_corpus(queries, docs, 50, SearchSettings(method="ivf_flat", nlist=32, nprobe=1)).recall
    all_lists = search_corpus(queries, docs, 50, SearchSettings(method="ivf_flat", nlist=32, nprobe=32)).recall
    assert few < all_lists == pytest.approx(1.0)


def test_factory_strings_and_list_count() -> None:
    s = SearchSettings(nlist=0, pq_m=16, pq_nbits=8, hnsw_m=24)
    assert ivf_lists(1_000_000, 0) == 4000 and ivf_lists(1000, 0) == 25 and ivf_lists(10, 64) == 1
    assert factory_string("ivf_flat", 1_000_000, 384, s) == "IVF4000,Flat"
    assert factory_string("ivf_pq", 1_000_000, 384, s) == "IVF4000,PQ16x8"
    assert factory_string("hnsw", 10, 384, s) == "HNSW24,Flat"


@pytest.mark.parametrize(
    ("knobs", "match"),
    [
        ({"method": "annoy"}, "search.method 'annoy' is unknown"),
        ({"nprobe": 0}, "search.nprobe must be an integer >= 1"),
        ({"block_rows": True}, "search.block_rows must be an integer"),
        ({"pq_nbits": 20}, "search.pq_nbits must be at most 16"),
        ({"gpu": "yes"}, "search.gpu must be true or false"),
        ({"probes": 3}, "search: .*probes"),
    ],
)
def test_bad_search_settings(knobs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        settings_from(knobs)


def test_pq_m_must_divide_every_evaluated_dim_before_encoding() -> None:
    pq = SearchSettings(method="ivf_pq", pq_m=16)
    check_settings(EvalSettings(dims=[None, 128], search=pq), 384)
    with pytest.raises(ConfigError, match=r"pq_m \(16\) must divide the embedding dim \(200\)"):
        check_settings(EvalSettings(dims=[None, 200], search=pq), 384)
    data, enc = tiny_task()
    with pytest.raises(ConfigError, match="must divide"):
        evaluate_retrieval(data, enc, settings=RetrievalSettings(search=SearchSettings(method="ivf_pq", pq_m=3)))
    assert enc.calls == {"query": 0, "document": 0}


# ------------------------------------------------------------------------------------------------ GPU plan
@pytest.mark.parametrize(
    ("method", "gpus", "k", "allowed", "expected"),
    [
        ("exact", 0, 100, True, False),  # CPU-only faiss or no GPU
        ("exact", 1, 100, True, True),
        ("exact", 8, 2048, True, True),
        ("exact", 8, 2049, True, False),  # beyond what a GPU index returns
        ("ivf_flat", 2, 1000, True, True),
        ("ivf_flat", 2, 1000, False, False),  # search.gpu=false
        ("blocked", 8, 100, True, False),  # bounds host memory: streams from the store on the CPU
        ("ivf_pq", 8, 100, True, False),
        ("hnsw", 8, 100, True, False),
    ],
)
def test_gpu_plan(method, gpus, k, allowed, expected) -> None:
    assert gpu_plan.use_gpus(method, gpus, k, allowed) is expected


def test_gpu_count_is_zero_without_gpu_kernels(monkeypatch) -> None:
    if hasattr(faiss, "StandardGpuResources"):
        monkeypatch.delattr(faiss, "StandardGpuResources")
    assert gpu_plan.gpu_count() == 0
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 3)
    assert gpu_plan.gpu_count() == 3


def test_flat_search_shards_to_gpus_when_faiss_sees_them(monkeypatch) -> None:
    """With a faked GPU count, the flat index goes through the sharding cloner (a stand-in that keeps it on the
    CPU) for a k a GPU index returns, and stays on the CPU beyond it or when asked to."""
    moved: list[int] = []

    def fake_to_gpus(index):
        moved.append(index.ntotal)
        return index

    monkeypatch.setattr(search, "gpu_count", lambda: 2)
    monkeypatch.setattr(search, "to_gpus", fake_to_gpus)
    docs, queries = tied_corpus(3000, 30, 4)
    expected = canonical_reference(queries, docs, 100)[1]
    np.testing.assert_array_equal(search_inner_product(queries, docs, 100)[1], expected)
    assert moved == [0]  # moved while empty: the vectors are added on the GPUs
    search_inner_product(queries, docs, 2500)
    search_inner_product(queries, docs, 100, use_gpu=False)
    assert moved == [0]


# ------------------------------------------------------------------------------------------------ wiring
def test_config_reaches_eval_settings_and_mining() -> None:
    cfg = compose("eval", ["eval.search.method=blocked", "eval.search.block_rows=1000"])
    settings = eval_settings(cfg.eval)
    assert settings.search == SearchSettings(method="blocked", block_rows=1000)
    assert eval_settings(compose("eval", []).eval).search == SearchSettings()  # exact by default
    assert search_settings(compose("mine", ["search.method=hnsw"]).search).method == "hnsw"
    assert compose("train", []).eval.search.method == "exact"
    with pytest.raises(ConfigError, match=r"search\.method 'flat' is unknown"):
        eval_settings(compose("eval", ["eval.search.method=flat"]).eval)


def test_evaluation_blocked_equals_exact_and_ann_writes_recall(tmp_path) -> None:
    data, enc = tiny_task()
    settings = RetrievalSettings(top_k=10, k_values=(1, 3, 5, 10))
    exact = evaluate_retrieval(data, enc, settings=settings)
    blocked = evaluate_retrieval(
        data, enc, settings=RetrievalSettings(**{**settings.__dict__, "search": SearchSettings("blocked", 2)})
    )
    assert blocked.rows == exact.rows and blocked.run == exact.run
    hnsw = evaluate_retrieval(
        data, enc, settings=RetrievalSettings(**{**settings.__dict__, "search": SearchSettings("hnsw")})
    )
    assert hnsw.rows[0]["search_recall_at_5"] == 1.0  # five documents: HNSW finds them all
    assert "search_recall_at_5" not in exact.rows[0]


@pytest.mark.slow
def test_real_scifact_subset_blocked_and_ivf_in_metrics_json(real_data, tmp_path) -> None:
    from embedlab.models import Encoder

    minilm = Encoder.from_pretrained("all-MiniLM-L6-v2")
    cache = EmbeddingCache(tmp_path / "cache")
    outputs = {}
    for method in ("exact", "blocked", "ivf_flat"):
        settings = EvalSettings(limit=20, max_docs=200, search=SearchSettings(method, block_rows=37, nprobe=1))
        out = tmp_path / method
        evaluate_tasks(["scifact"], minilm, settings=settings, data_root=real_data, cache=cache, out_dir=out)
        outputs[method] = out
    exact, blocked, ivf = (json.loads((outputs[m] / "metrics.json").read_text())["scifact"] for m in outputs)
    assert blocked == exact and exact["ndcg_at_10"] > 0.5
    for name in ("runs/scifact.trec", "per_query/scifact.jsonl"):
        assert (outputs["blocked"] / name).read_text() == (outputs["exact"] / name).read_text()
    assert 0.0 < ivf["search_recall_at_200"] < 1.0  # one probe of 2 lists misses some of exact's top 200
    assert cache.misses == 2  # corpus and queries encoded once, for all three methods


def hand_mining_task() -> tuple[RetrievalData, FakeEncoder]:
    """Ten documents, two pairs of them identical vectors (ties), three queries."""
    angles = {f"d{i}": a for i, a in enumerate([0, 5, 5, 10, 20, 20, 40, 60, 90, 120])}
    vectors = {f"doc {d}": at(a) for d, a in angles.items()} | {"q a": at(2), "q b": at(21), "q c": at(95)}
    qrels = {"qa": {"d0": 1}, "qb": {"d4": 1, "d6": 1}, "qc": {"d8": 1}}
    corpus = {d: f"doc {d}" for d in angles}
    return RetrievalData("hand", corpus, {"qa": "q a", "qb": "q b", "qc": "q c"}, qrels, "fp"), FakeEncoder(vectors)


def test_mining_blocked_equals_exact_and_ann_reports_recall() -> None:
    data, enc = hand_mining_task()
    cfg = SelectionConfig(num_negatives=3, max_rank=8)
    exact = mine(data, enc, enc, cfg, top_k=8)
    blocked = mine(data, enc, enc, cfg, top_k=8, search=SearchSettings(method="blocked", block_rows=3))
    assert blocked.records == exact.records and blocked.counts == exact.counts
    assert exact.search == {"method": "exact"}
    hnsw = mine(data, enc, enc, cfg, top_k=10, search=SearchSettings(method="hnsw"))
    assert hnsw.search == {"method": "hnsw", "recall_at_top_k": 1.0}  # top_k = the whole corpus: all found
