"""Evaluation: exact search, quantization, retrieval and STS scoring, the embedding cache, and real-data subsets.

Everything but the last section runs on a fake encoder with fixed vectors, so each expected number can be
worked out by hand (the derivations sit next to the tests).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fakes import QUERIES, TINY, FakeEncoder, at, tiny_task
from scipy import stats

from embedlab.data import RetrievalData, StsPairs
from embedlab.errors import ConfigError
from embedlab.eval.retrieval import RetrievalSettings, evaluate_retrieval
from embedlab.eval.runner import EvalSettings, check_settings, evaluate_tasks
from embedlab.eval.sts import evaluate_sts, pearson, rank_average, spearman


def test_retrieval_metrics_by_hand() -> None:
    data, enc = tiny_task()
    result = evaluate_retrieval(data, enc, settings=TINY)
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert result.per_query["q1"]["ndcg_at_10"] == pytest.approx(ndcg_q1)
    assert result.per_query["q2"]["ndcg_at_10"] == pytest.approx(1.0)
    [row] = result.rows
    assert (row["dim"], row["precision"]) == (2, "float32")
    assert row["ndcg_at_10"] == pytest.approx((ndcg_q1 + 1) / 2)
    assert (row["recall_at_1"], row["recall_at_3"], row["recall_at_5"]) == pytest.approx((0.5, 0.75, 1.0))
    assert row["mrr_at_10"] == pytest.approx(0.75)
    assert list(result.run["q1"]) == ["d1", "d2", "d3", "d4", "d5"]
    assert list(result.run["q2"]) == ["d4", "d3", "d2", "d1", "d5"]
    expected = [math.cos(math.radians(a - 10)) for a in (0, 30, 60, 90, 180)]
    assert list(result.run["q1"].values()) == pytest.approx(expected, abs=1e-6)
    assert enc.calls == {"query": 1, "document": 1}


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_ignore_identical_ids_drops_the_self_match_and_still_returns_top_k(precision: str) -> None:
    # The query "d1" has d1's own vector, so d1 ranks first unless it is dropped; top_k=2.
    data, enc = tiny_task()
    enc.vectors["about d1"] = np.asarray(at(0), np.float32)
    # "qx" is no document id: nothing to drop, and still exactly top_k documents.
    enc.vectors["other"] = np.asarray(at(100), np.float32)
    data = RetrievalData(
        name="self",
        corpus=data.corpus,
        queries={"d1": "about d1", "qx": "other"},
        qrels={"d1": {"d2": 1}, "qx": {"d4": 1}},
        fingerprint="self",
    )
    keep = evaluate_retrieval(data, enc, settings=RetrievalSettings(top_k=2, k_values=(1,), precisions=[precision]))
    assert list(keep.run["d1"]) == ["d1", "d2"]
    assert keep.per_query["d1"]["ndcg_at_1"] == 0.0
    # int8 scores stay close to the float cosines (documents dequantized, queries float)
    assert list(keep.run["d1"].values()) == pytest.approx([1.0, math.cos(math.radians(30))], abs=0.01)
    drop = evaluate_retrieval(
        data,
        enc,
        settings=RetrievalSettings(top_k=2, k_values=(1,), precisions=[precision], ignore_identical_ids=True),
    )
    assert list(drop.run["d1"]) == ["d2", "d3"]
    assert drop.per_query["d1"]["ndcg_at_1"] == 1.0
    assert list(keep.run["qx"]) == list(drop.run["qx"]) == ["d4", "d3"]


def test_asymmetric_query_encoder_changes_the_run() -> None:
    # The student swaps the queries: q1 at 80°, q2 at 10°.
    #   q1 ranks d4 d3 d2 d1: d4 rank 1, d2 rank 3 -> nDCG (1 + 1/log2 4) / (1 + 1/log2 3)
    #   q2 ranks d1 d2 d3 d4: d4 rank 4 -> nDCG 1/log2 5
    data, teacher = tiny_task()
    student = FakeEncoder({QUERIES["q1"]: at(80), QUERIES["q2"]: at(10)}, name="student")
    result = evaluate_retrieval(data, teacher, student, settings=TINY)
    assert list(result.run["q1"]) == ["d4", "d3", "d2", "d1", "d5"]
    assert result.per_query["q1"]["ndcg_at_10"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert result.per_query["q2"]["ndcg_at_10"] == pytest.approx(1 / math.log2(5))
    assert teacher.calls == {"query": 0, "document": 1}
    assert student.calls == {"query": 1, "document": 0}


def test_asymmetric_dim_mismatch_is_a_config_error_before_encoding() -> None:
    data, teacher = tiny_task()
    student = FakeEncoder(dim=3, name="student")
    with pytest.raises(ConfigError, match=r"queries 3 \(student\) vs documents 2 \(fake\)"):
        evaluate_retrieval(data, teacher, student, settings=TINY)
    assert teacher.calls == student.calls == {"query": 0, "document": 0}


def random_task(n_docs: int = 40, n_queries: int = 6, seed: int = 0) -> RetrievalData:
    rng = np.random.default_rng(seed)
    corpus = {f"doc{i}": f"random document {seed} {i}" for i in range(n_docs)}
    queries = {f"q{i}": f"random query {seed} {i}" for i in range(n_queries)}
    qrels = {q: {f"doc{j}": 1 for j in rng.choice(n_docs, 2, replace=False)} for q in queries}
    return RetrievalData(name="random", corpus=corpus, queries=queries, qrels=qrels, fingerprint=f"random{seed}")


def test_grid_of_dims_and_precisions() -> None:
    data, enc = random_task(), FakeEncoder(dim=4)
    settings = RetrievalSettings(top_k=10, k_values=(1, 10), dims=[2, None], precisions=["float32", "int8", "binary"])
    result = evaluate_retrieval(data, enc, settings=settings)
    # full size first (the reference cell metrics.json reports), then the requested truncations
    assert [(r["dim"], r["precision"]) for r in result.rows] == [
        (4, "float32"),
        (4, "int8"),
        (4, "binary"),
        (2, "float32"),
        (2, "int8"),
        (2, "binary"),
    ]
    for row in result.rows:
        assert all(0.0 <= row[m] <= 1.0 for m in ("ndcg_at_10", "recall_at_10", "mrr_at_10")), row
    assert enc.calls == {"query": 1, "document": 1}  # encoded once for all six cells
    # each cell equals the same cell evaluated alone
    alone = evaluate_retrieval(data, enc, settings=RetrievalSettings(top_k=10, k_values=(1, 10)))
    assert alone.rows[0] == result.rows[0]
    alone = evaluate_retrieval(
        data, enc, settings=RetrievalSettings(top_k=10, k_values=(1, 10), dims=[2], precisions=["int8"])
    )
    assert alone.rows[1] == result.rows[4]


def test_binary_with_and_without_rescoring() -> None:
    data, enc = random_task(n_docs=60, seed=1), FakeEncoder(dim=16)
    q = np.stack([enc._vector(t) for t in data.queries.values()])
    d = np.stack([enc._vector(t) for t in data.corpus.values()])
    dids = list(data.corpus)
    signs = np.where(d > 0, 1.0, -1.0)

    def run_of(rescore: int) -> dict[str, dict[str, float]]:
        settings = RetrievalSettings(top_k=5, k_values=(1, 5), precisions=["binary"], binary_rescore=rescore)
        result = evaluate_retrieval(data, enc, settings=settings)
        assert all(0.0 <= v <= 1.0 for k, v in result.rows[0].items() if k not in ("dim", "precision"))
        return result.run

    # rescore 0: Hamming order only; scores are minus the number of differing sign bits
    hamming = ((q[:, None, :] > 0) != (d[None, :, :] > 0)).sum(-1)
    for qi, ranked in enumerate(run_of(0).values()):
        assert len(ranked) == 5
        assert list(ranked.values()) == [-float(hamming[qi, dids.index(did)]) for did in ranked]
        assert sorted(ranked.values(), reverse=True) == list(ranked.values())
        assert -min(ranked.values()) <= np.sort(hamming[qi])[4]  # the five nearest codes

    # rescore > 0: scores are float query · ±1 document, descending
    for qi, ranked in enumerate(run_of(3).values()):
        assert len(ranked) == 5
        exact = [float(q[qi] @ signs[dids.index(did)]) for did in ranked]
        assert list(ranked.values()) == pytest.approx(exact, abs=1e-5)
        assert sorted(ranked.values(), reverse=True) == list(ranked.values())

    # rescoring every document gives the exact top 5 by q · sign(d)
    for qi, ranked in enumerate(run_of(100).values()):
        best = np.argsort(-(signs @ q[qi]))[:5]
        assert list(ranked) == [dids[i] for i in best]


def test_unknown_precision_fails_before_encoding() -> None:
    data, enc = tiny_task()
    with pytest.raises(ConfigError, match="fp8"):
        evaluate_retrieval(data, enc, settings=RetrievalSettings(precisions=["fp8"]))
    with pytest.raises(ConfigError, match="truncation dim 3"):
        evaluate_retrieval(data, enc, settings=RetrievalSettings(dims=[3]))
    assert enc.calls == {"query": 0, "document": 0}


def test_evaluate_tasks_checks_everything_before_loading_or_encoding(tmp_path) -> None:
    # tmp_path holds no data: reaching the loader would raise a different error than ConfigError.
    enc = FakeEncoder(dim=8)
    with pytest.raises(ConfigError, match="known tasks: arguana, scifact, sick, stsb"):
        evaluate_tasks(["stsb", "nope"], enc, data_root=tmp_path)
    for bad in (
        EvalSettings(dims=[16]),
        EvalSettings(dims=[0]),
        EvalSettings(precisions=["fp8"]),
        EvalSettings(k_values=(0, 10)),
        EvalSettings(limit=0),
        EvalSettings(top_k=0),
    ):
        with pytest.raises(ConfigError):
            evaluate_tasks(["stsb", "scifact"], enc, settings=bad, data_root=tmp_path)
    with pytest.raises(ConfigError, match="equal dims"):
        evaluate_tasks(["stsb", "scifact"], enc, FakeEncoder(dim=4), data_root=tmp_path)
    assert enc.calls == {"query": 0, "document": 0}
    check_settings(EvalSettings(dims=[None, 8], precisions=["binary"]), 8)


# ---------------------------------------------------------------------------------------------------------
# STS
# ---------------------------------------------------------------------------------------------------------


def test_rank_and_correlations_equal_scipy_with_ties() -> None:
    rng = np.random.default_rng(6)
    for n in (2, 7, 50, 300):
        x = rng.integers(0, 6, n).astype(np.float64)  # many ties
        y = x * 0.5 + rng.integers(0, 4, n)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        np.testing.assert_allclose(rank_average(x), stats.rankdata(x))
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    x, y = rng.standard_normal(200), rng.standard_normal(200)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)


def test_evaluate_sts_by_hand() -> None:
    # a=(1,0), b=(0,1), c=(1,1) (not normalised), d=(-1,0); pairs (a,b) (a,c) (b,c) (d,a), gold 1 4 3 0.
    # cosines 0, s, s, -1 with s = 1/sqrt 2.
    # Spearman: cosine ranks 2 3.5 3.5 1 (a tie), gold ranks 2 4 3 1; deviations from 2.5:
    #   (-.5 1 1 -1.5) . (-.5 1.5 .5 -1.5) = 4.5; |x|^2 = 4.5, |y|^2 = 5  ->  rho = 4.5 / sqrt(22.5) = sqrt(0.9)
    # Pearson: gold deviations -1 2 1 -2 -> sum cos*dev = 3s + 2; sum (cos - mean)^2 = 2 - (2s - 1)^2 / 4;
    #   sum dev^2 = 10  ->  r = (3s + 2) / sqrt(10 (2 - (2s - 1)^2 / 4)) = 0.93160
    enc = FakeEncoder({"a": [1, 0], "b": [0, 1], "c": [1, 1], "d": [-1, 0]})
    pairs = StsPairs(
        name="tiny",
        sentences1=["a", "a", "b", "d"],
        sentences2=["b", "c", "c", "a"],
        scores=[1, 4, 3, 0],
        fingerprint="",
    )
    metrics, cos = evaluate_sts(pairs, enc)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(cos, [0.0, s, s, -1.0], atol=1e-7)
    assert metrics["cosine_spearman"] == pytest.approx(math.sqrt(0.9))
    assert metrics["cosine_pearson"] == pytest.approx((3 * s + 2) / math.sqrt(10 * (2 - (2 * s - 1) ** 2 / 4)))
    assert metrics["cosine_pearson"] == pytest.approx(0.93160, abs=1e-5)
    assert sorted(enc.encoded) == ["a", "b", "c", "d"]  # each distinct sentence once
    with pytest.raises(ConfigError, match="truncation dim 3"):
        evaluate_sts(pairs, enc, dim=3)
    assert enc.calls["query"] == 1


# ---------------------------------------------------------------------------------------------------------
# real data, CI-sized subsets, real MiniLM
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    from embedlab.models import Encoder

    return Encoder.from_pretrained("all-MiniLM-L6-v2")


@pytest.mark.slow
def test_real_subsets_write_mteb_metrics_per_query_and_runs(real_data, minilm, tmp_path) -> None:
    results = evaluate_tasks(
        ["scifact", "stsb"],
        minilm,
        settings=EvalSettings(limit=30, max_docs=300),
        data_root=real_data,
        out_dir=tmp_path,
    )
    assert [r.task for r in results] == ["scifact", "stsb"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics) == ["scifact", "stsb"]
    for name in ("ndcg_at_10", "recall_at_100", "map_at_100", "mrr_at_10", "precision_at_1", "recall_at_1000"):
        assert 0.0 <= metrics["scifact"][name] <= 1.0, name
    for name in ("cosine_spearman", "cosine_pearson"):
        assert 0.0 <= metrics["stsb"][name] <= 1.0, name
    assert metrics["scifact"]["ndcg_at_10"] > 0.5
    assert metrics["stsb"]["cosine_spearman"] > 0.6
    assert not (tmp_path / "grid.jsonl").exists()  # one cell only

    per_query = [json.loads(line) for line in (tmp_path / "per_query" / "scifact.jsonl").read_text().splitlines()]
    assert len(per_query) == 30 and len({row["query_id"] for row in per_query}) == 30
    mean = np.mean([row["ndcg_at_10"] for row in per_query])
    assert mean == pytest.approx(metrics["scifact"]["ndcg_at_10"])
    pairs = [json.loads(line) for line in (tmp_path / "per_query" / "stsb.jsonl").read_text().splitlines()]
    assert len(pairs) == 30 and set(pairs[0]) == {"pair", "cosine", "gold"}

    by_query: dict[str, list[tuple[int, float]]] = {}
    for line in (tmp_path / "runs" / "scifact.trec").read_text().splitlines():
        qid, q0, _did, rank, score, tag = line.split()
        assert (q0, tag) == ("Q0", "embedlab")
        by_query.setdefault(qid, []).append((int(rank), float(score)))
    assert set(by_query) == {row["query_id"] for row in per_query}
    for rows in by_query.values():
        assert [r for r, _ in rows] == list(range(1, 101))  # run_depth 100 of the 300 docs
        assert [s for _, s in rows] == sorted((s for _, s in rows), reverse=True)
