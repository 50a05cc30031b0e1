"""Paired significance tests checked where the answer is known: exact enumeration, null calibration, clear wins."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from embedlab.errors import DataFormatError, EmbedlabError
from embedlab.report.significance import (
    bootstrap_test,
    holm,
    metric_by_query,
    paired_arrays,
    paired_test,
    randomization_test,
)


def brute_force_sign_flip(d: np.ndarray) -> float:
    """The definition, one pattern at a time: share of sign patterns with |mean| >= the observed |mean|."""
    observed = abs(d.mean())
    hits = sum(abs(np.mean(d * np.array(s))) >= observed - 1e-12 for s in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


def test_hand_computed_case() -> None:
    # d = 1, 2, 3, 4: only all-plus and all-minus reach |mean| 2.5 -> p = 2 / 16
    a = np.zeros(4)
    result = randomization_test(a, np.array([1.0, 2.0, 3.0, 4.0]))
    assert result.exact and result.resamples == 16 and result.n == 4
    assert result.p_value == pytest.approx(0.125) and result.mean_diff == pytest.approx(2.5)
    # d = 1, -1, 1, -1: mean 0, every pattern reaches it
    assert randomization_test(a, np.array([1.0, -1.0, 1.0, -1.0])).p_value == 1.0


@pytest.mark.parametrize("n", [4, 5, 6, 7, 8])
def test_exact_mode_equals_enumeration_and_sampling_approaches_it(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.random(n), rng.random(n) + 0.2
    expected = brute_force_sign_flip(b - a)
    assert randomization_test(a, b, exact=True).p_value == pytest.approx(expected, abs=1e-12)
    sampled = randomization_test(a, b, resamples=40_000, exact=False, seed=1)
    assert not sampled.exact and sampled.p_value == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("method", ["randomization", "bootstrap"])
def test_identical_systems_give_uniform_p_values(method: str) -> None:
    """Exchangeable systems (same distribution per query): p must be ~ uniform, so ~5% fall below 0.05."""
    rng = np.random.default_rng(0)
    trials, n = 400, 40
    base = rng.random((trials, n))  # per-query difficulty, shared by both systems
    noise = 0.1 * rng.standard_normal((2, trials, n))
    ps = np.array(
        [
            paired_test(base[t] + noise[0, t], base[t] + noise[1, t], method, resamples=500, seed=t).p_value
            for t in range(trials)
        ]
    )
    assert 0.02 <= np.mean(ps < 0.05) <= 0.09
    # Kolmogorov-Smirnov distance to U(0, 1); 0.068 is the 5% critical value for 400 draws, a little slack for the
    # bootstrap's known anti-conservatism with n = 40
    ecdf = np.arange(1, trials + 1) / trials
    ks = np.max(np.maximum(ecdf - np.sort(ps), np.sort(ps) - (ecdf - 1 / trials)))
    assert ks < (0.068 if method == "randomization" else 0.09)


@pytest.mark.parametrize("method", ["randomization", "bootstrap"])
def test_a_clearly_better_system_gets_a_small_p(method: str) -> None:
    rng = np.random.default_rng(1)
    a = rng.random(300)
    b = np.clip(a + 0.05 + 0.1 * rng.standard_normal(300), 0, 1)
    result = paired_test(a, b, method, resamples=5000)
    assert result.p_value < 0.001 and result.mean_diff > 0.03
    # the direction does not matter (two-sided) and a seed reproduces the value
    assert paired_test(b, a, method, resamples=5000).p_value < 0.001
    assert paired_test(a, b, method, resamples=5000).p_value == result.p_value


def test_bootstrap_and_randomization_agree_on_moderate_effects() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(200)
    b = a + 0.015 + 0.1 * rng.standard_normal(200)
    r = randomization_test(a, b, resamples=20_000).p_value
    s = bootstrap_test(a, b, resamples=20_000).p_value
    assert 0.005 < r < 0.5 and abs(r - s) < 0.05


def test_bad_inputs() -> None:
    with pytest.raises(EmbedlabError, match="equal-length"):
        randomization_test(np.zeros(3), np.zeros(4))
    with pytest.raises(EmbedlabError, match="resamples must be"):
        bootstrap_test(np.zeros(3), np.zeros(3), resamples=0)
    with pytest.raises(EmbedlabError, match="unknown paired test 't'"):
        paired_test(np.zeros(3), np.zeros(3), "t")
    with pytest.raises(EmbedlabError, match=r"runA and runB scored different queries \(1 only in the first"):
        paired_arrays({"q1": 0.1, "q2": 0.2}, {"q1": 0.1, "q3": 0.3}, ("runA", "runB"))


def write_per_query(run: Path, rows: dict[str, float], task: str = "scifact") -> Path:
    (run / "per_query").mkdir(parents=True)
    lines = [json.dumps({"query_id": q, "ndcg_at_10": v, "recall_at_10": v}) for q, v in rows.items()]
    (run / "per_query" / f"{task}.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_seeds_are_averaged_per_query_and_must_share_queries(tmp_path: Path) -> None:
    s0 = write_per_query(tmp_path / "s0", {"q1": 0.2, "q2": 1.0})
    s1 = write_per_query(tmp_path / "s1", {"q2": 0.0, "q1": 0.4})
    assert metric_by_query([s0, s1], "scifact", "ndcg_at_10") == pytest.approx({"q1": 0.3, "q2": 0.5})
    other = write_per_query(tmp_path / "other", {"q1": 0.2, "q9": 1.0})
    with pytest.raises(EmbedlabError, match=rf"{s0} and {other} scored different queries"):
        metric_by_query([s0, other], "scifact", "ndcg_at_10")
    with pytest.raises(DataFormatError, match=r"s0/per_query/scifact.jsonl: field 'map_at_1': missing for query"):
        metric_by_query([s0], "scifact", "map_at_1")
    with pytest.raises(EmbedlabError, match="no per-query scores"):
        metric_by_query([s0], "arguana", "ndcg_at_10")
    (s1 / "per_query" / "scifact.jsonl").write_text('{"query_id": "q1", "ndcg_at_10": 1}\n{"query_id": "q1"}\n')
    with pytest.raises(DataFormatError, match=r"s1/per_query/scifact.jsonl, line 2: field 'query_id': duplicate"):
        metric_by_query([s1], "scifact", "ndcg_at_10")


def test_holm_by_hand():
    # m = 4: sorted 0.005, 0.01, 0.03, 0.04, times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.02 0.03 0.06 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, and never below a smaller p's adjusted value
    assert holm([0.2]) == [0.2] and holm([]) == []
