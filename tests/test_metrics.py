"""Retrieval metrics: hand-worked values, parity with pytrec_eval (trec_eval itself), and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedlab.errors import ConfigError
from embedlab.eval.metrics import DEFAULT_K, aggregate, per_query_metrics, retrieval_metrics

METRICS_ORDER = ("ndcg", "map", "recall", "precision", "mrr")

# ---------------------------------------------------------------------------------------------------------
# 1. A tiny example worked out by hand.
#
# q1: judged d1=2, d2=1, d3=-1, d4=1 -> 3 relevant docs (d1, d2, d4); d4 is never retrieved; d3 is judged
#     negative, which gains 0 (not -1) in the DCG.
#     run d3=.9, d1=.8, d5=.8, d2=.5, d6=.1. d1 and d5 tie; trec_eval puts the larger doc id first, so the
#     ranking is d3(-1) d5(-) d1(2) d2(1) d6(-), gains 0 0 2 1 0.
#     ideal gains 2,1,1: IDCG@3 = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2.5 + 0.6309298 = 3.1309298 (= IDCG@5)
#     nDCG@1 = 0; nDCG@3 = (2/log2(4)) / 3.1309298 = 1 / 3.1309298 = 0.3193939
#     nDCG@5 = (1 + 1/log2(5)) / 3.1309298 = 1.4306766 / 3.1309298 = 0.4569494
#     P@3 = 1/3, P@5 = 2/5; recall@3 = 1/3, recall@5 = 2/3
#     AP@3 = (1/3) / 3 = 1/9; AP@5 = (1/3 + 2/4) / 3 = 5/18
#     MRR@1 = 0, MRR@3 = MRR@5 = 1/3 (it would be 1/2 if the tie went the other way).
# q2: judged a=1, run a=.3 only: one doc retrieved, fewer than k.
#     Everything is 1 except P@k = 1/k (trec_eval divides by k, not by the number retrieved).
# q3: judged x=0 only (no relevant doc): evaluated, and 0 everywhere.
# q4: in the run, not in the qrels -> skipped.   q5: in the qrels, not in the run -> skipped.
# ---------------------------------------------------------------------------------------------------------
TINY_QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": -1, "d4": 1},
    "q2": {"a": 1},
    "q3": {"x": 0},
    "q5": {"z": 1},
}
TINY_RUN = {
    "q1": {"d3": 0.9, "d1": 0.8, "d5": 0.8, "d2": 0.5, "d6": 0.1},
    "q2": {"a": 0.3},
    "q3": {"x": 1.0, "y": 0.5},
    "q4": {"d1": 1.0},
}
IDCG_Q1 = 2 + 1 / math.log2(3) + 1 / 2
Q1_EXPECTED = {
    "ndcg_at_1": 0.0,
    "ndcg_at_3": 1 / IDCG_Q1,
    "ndcg_at_5": (1 + 1 / math.log2(5)) / IDCG_Q1,
    "map_at_1": 0.0,
    "map_at_3": 1 / 9,
    "map_at_5": 5 / 18,
    "recall_at_1": 0.0,
    "recall_at_3": 1 / 3,
    "recall_at_5": 2 / 3,
    "precision_at_1": 0.0,
    "precision_at_3": 1 / 3,
    "precision_at_5": 2 / 5,
    "mrr_at_1": 0.0,
    "mrr_at_3": 1 / 3,
    "mrr_at_5": 1 / 3,
}


def test_tiny_example_by_hand():
    mean, per_query = retrieval_metrics(TINY_QRELS, TINY_RUN, k_values=(1, 3, 5))
    assert set(per_query) == {"q1", "q2", "q3"}
    assert per_query["q1"] == pytest.approx(Q1_EXPECTED, abs=1e-12)
    assert per_query["q1"]["ndcg_at_3"] == pytest.approx(0.3193939, abs=1e-7)
    assert per_query["q1"]["ndcg_at_5"] == pytest.approx(0.4569494, abs=1e-7)
    q2 = {f"{m}_at_{k}": 1.0 for m in ("ndcg", "map", "recall", "mrr") for k in (1, 3, 5)}
    q2 |= {"precision_at_1": 1.0, "precision_at_3": 1 / 3, "precision_at_5": 1 / 5}
    assert per_query["q2"] == pytest.approx(q2, abs=1e-12)
    assert set(per_query["q3"].values()) == {0.0}
    assert mean["precision_at_5"] == pytest.approx((2 / 5 + 1 / 5 + 0) / 3, abs=1e-12)
    assert mean["mrr_at_3"] == pytest.approx((1 / 3 + 1 + 0) / 3, abs=1e-12)
    assert mean == pytest.approx(aggregate(per_query), abs=0)


def test_ties_break_by_doc_id_descending_as_strings():
    # "9" > "10" as strings, so "9" ranks first although 10 > 9 as numbers.
    qrels = {"q": {"10": 1}}
    assert per_query_metrics(qrels, {"q": {"9": 0.5, "10": 0.5}}, (1, 2))["q"]["mrr_at_2"] == 0.5
    qrels = {"q": {"9": 1}}
    assert per_query_metrics(qrels, {"q": {"9": 0.5, "10": 0.5}}, (1,))["q"]["mrr_at_1"] == 1.0


def test_tie_across_the_deepest_cutoff():
    # The only tie straddles k=2 (the largest k): trec_eval ranks c before b, so c makes the cut.
    run = {"q": {"a": 0.9, "b": 0.5, "c": 0.5}}
    m = per_query_metrics({"q": {"c": 1}}, run, (2,))["q"]
    assert m["mrr_at_2"] == 0.5 and m["recall_at_2"] == 1.0


# ---------------------------------------------------------------------------------------------------------
# 2. Parity with pytrec_eval on a random run.
# ---------------------------------------------------------------------------------------------------------
PARITY_K = (*DEFAULT_K, 2, 7, 50, 250)
TREC_NAMES = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P"}


def _random_collection(seed: int = 13) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    pool = [f"d{j}" for j in range(600)]  # unpadded ids: string order differs from numeric order
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for i in range(50):
        qid = f"q{i}"
        retrieved = rng.choice(len(pool), size=int(rng.integers(150, 251)), replace=False)
        scores = rng.normal(size=retrieved.size)
        if i % 2 == 0:
            scores = np.round(scores, 1)  # many deliberate ties, including across every cutoff
        run[qid] = {pool[j]: float(s) for j, s in zip(retrieved, scores, strict=True)}
        judged_in = rng.choice(retrieved, size=int(rng.integers(1, 15)), replace=False)
        unretrieved = np.setdiff1d(np.arange(len(pool)), retrieved)
        judged_out = rng.choice(unretrieved, size=int(rng.integers(0, 6)), replace=False)
        qrels[qid] = {pool[j]: int(rng.integers(0, 3)) for j in (*judged_in, *judged_out)}
    top_q0 = max(run["q0"], key=run["q0"].get)
    qrels["q0"][top_q0] = -1  # a negative judgment on the top-ranked doc (gains 0, not -1)
    qrels["q1"] = {doc: 0 for doc in list(run["q1"])[:5]}  # judged, none relevant
    qrels["q2"] = {}  # query with an empty qrels dict
    qrels["q_no_run"] = {"d1": 2, "d2": 1}
    run["q_not_judged"] = {"d1": 1.0, "d2": 0.5}
    qrels["q_empty_run"] = {"d3": 1}
    run["q_empty_run"] = {}
    return qrels, run


def _trec_order(scores: dict[str, float]) -> list[str]:
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def test_parity_with_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = _random_collection()
    cut = ",".join(map(str, PARITY_K))
    measures = {f"{name}.{cut}" for name in TREC_NAMES.values()} | {"recip_rank"}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)

    mean, per_query = retrieval_metrics(qrels, run, PARITY_K)
    assert set(per_query) == set(reference)
    assert {"q0", "q1", "q_empty_run"} <= set(per_query)
    assert not {"q2", "q_no_run", "q_not_judged"} & set(per_query)

    # MRR@k: MTEB's own metric, compared with recip_rank on runs truncated to their top k in trec_eval order,
    # and with the rank of the first relevant doc in the full run (1 / recip_rank) as an order-free check.
    truncated_rr = {}
    for k in PARITY_K:
        truncated = {qid: {d: s[d] for d in _trec_order(s)[:k]} for qid, s in run.items()}
        truncated_rr[k] = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated)

    for qid, ref in reference.items():
        ours = per_query[qid]
        for k in PARITY_K:
            for ours_name, trec_name in TREC_NAMES.items():
                assert ours[f"{ours_name}_at_{k}"] == pytest.approx(ref[f"{trec_name}_{k}"], abs=1e-6), (
                    qid,
                    ours_name,
                    k,
                )
            rr = ref["recip_rank"]
            order_free = rr if rr > 0 and round(1 / rr) <= k else 0.0
            assert ours[f"mrr_at_{k}"] == pytest.approx(truncated_rr[k][qid]["recip_rank"], abs=1e-6)
            assert ours[f"mrr_at_{k}"] == pytest.approx(order_free, abs=1e-6)

    # Each cutoff alone must agree with the joint computation (the deepest cutoff decides how far to rank).
    for k in (1, 2, 7):
        alone = per_query_metrics(qrels, run, (k,))
        assert alone == {qid: {n: v for n, v in m.items() if n.endswith(f"_at_{k}")} for qid, m in per_query.items()}

    for k in PARITY_K:
        for ours_name, trec_name in TREC_NAMES.items():
            expected = np.mean([ref[f"{trec_name}_{k}"] for ref in reference.values()])
            assert mean[f"{ours_name}_at_{k}"] == pytest.approx(expected, abs=1e-6)
        expected = np.mean([truncated_rr[k][qid]["recip_rank"] for qid in reference])
        assert mean[f"mrr_at_{k}"] == pytest.approx(expected, abs=1e-6)


def test_parity_is_not_vacuous():
    # Guard against a collection so easy that a wrong tie-break or cutoff could still pass.
    qrels, run = _random_collection()
    per_query = per_query_metrics(qrels, run, PARITY_K)
    values = [v for metrics in per_query.values() for v in metrics.values()]
    assert 0 < np.mean(values) < 1
    tied = [q for q, s in run.items() if len(set(s.values())) < len(s)]
    assert len(tied) >= 20


# ---------------------------------------------------------------------------------------------------------
# 3. Edge cases.
# ---------------------------------------------------------------------------------------------------------
def test_empty_inputs_give_empty_results():
    assert retrieval_metrics({"q": {"d": 1}}, {}) == ({}, {})
    assert retrieval_metrics({}, {"q": {"d": 1.0}}) == ({}, {})
    assert aggregate({}) == {}


def test_empty_run_entry_scores_zero():
    per_query = per_query_metrics({"q": {"d": 1}}, {"q": {}}, (1, 10))
    assert per_query == {"q": {f"{m}_at_{k}": 0.0 for k in (1, 10) for m in METRICS_ORDER}}


def test_k_larger_than_retrieved():
    qrels = {"q": {"a": 1, "b": 2, "c": 1}}
    run = {"q": {"a": 0.9, "x": 0.5}}
    m = per_query_metrics(qrels, run, (1000,))["q"]
    idcg = 2 + 1 / math.log2(3) + 1 / 2
    assert m["ndcg_at_1000"] == pytest.approx(1 / idcg)
    assert m["map_at_1000"] == pytest.approx(1 / 3)
    assert m["recall_at_1000"] == pytest.approx(1 / 3)
    assert m["precision_at_1000"] == pytest.approx(1 / 1000)
    assert m["mrr_at_1000"] == 1.0


def test_metric_names_and_numpy_scores():
    run = {"q": {"a": np.float32(0.2), "b": np.float64(0.7)}}
    m = per_query_metrics({"q": {"a": 1}}, run, (1, 2))["q"]
    assert list(m) == [f"{name}_at_{k}" for k in (1, 2) for name in METRICS_ORDER]
    assert m["mrr_at_1"] == 0.0 and m["mrr_at_2"] == 0.5


@pytest.mark.parametrize("bad", [(), (0,), (5, -1)])
def test_invalid_cutoffs_are_rejected(bad):
    with pytest.raises(ConfigError):
        per_query_metrics({"q": {"a": 1}}, {"q": {"a": 1.0}}, bad)
