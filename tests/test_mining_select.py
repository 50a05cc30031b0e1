"""Negative selection rules on hand-made score tables, each rule checked against a value worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import ConfigError
from embedlab.mining.select import SelectionConfig, margin_threshold, select_negatives

# One query, 8 candidates in rank order; candidate 1 is the known positive (score 0.80), candidate 4 repeats its text.
SCORES = np.array([[0.90, 0.80, 0.78, 0.75, 0.74, 0.70, 0.60, 0.50]])
POSITIVE = np.array([[False, True, False, False, False, False, False, False]])
DUPLICATE = np.array([[False, False, False, False, True, False, False, False]])
S_POS = np.array([0.80])


def select(**kwargs):
    return select_negatives(SCORES, POSITIVE, DUPLICATE, S_POS, SelectionConfig(**kwargs))


def test_window_only_keeps_ranks_in_order():
    sel = select(num_negatives=3, min_rank=1, max_rank=100)
    assert sel.negatives.tolist() == [[0, 2, 3]]  # positive and duplicate skipped, the rest by rank
    sel = select(num_negatives=3, min_rank=4, max_rank=7)
    assert sel.negatives.tolist() == [[3, 5, 6]]  # ranks 4..7 = columns 3..6, minus the duplicate
    assert sel.sampled()[0].nonzero()[0].tolist() == [3, 5, 6]
    assert sel.counts() == {
        "dropped_positive": 1,
        "dropped_duplicate": 1,
        "dropped_window": 3,  # ranks 1, 3, 8
        "dropped_margin": 0,
        "eligible": 3,
        "sampled": 3,
    }


def test_relative_margin_by_hand():
    # t = 0.95 × 0.80 = 0.76: drops 0.90 and 0.78 (0.75 stays)
    sel = select(num_negatives=8, margin="relative", relative=0.95)
    assert sel.threshold[0] == pytest.approx(0.76)
    assert sel.negatives.tolist() == [[3, 5, 6, 7, -1, -1, -1, -1]]
    assert sel.dropped["margin"][0].nonzero()[0].tolist() == [0, 2]


@pytest.mark.parametrize(
    ("s_pos", "scores", "threshold", "kept"),
    [
        # a cosine positive below 0: t = −0.20 − 0.05 × 0.20 = −0.21 (0.95 × −0.20 = −0.19 would keep −0.195 and
        # −0.205, which outscore or nearly match the positive)
        (-0.20, [-0.10, -0.195, -0.205, -0.25], -0.21, [3]),
        (0.0, [0.10, 0.0, -0.05], 0.0, [1, 2]),  # s⁺ = 0: no margin, only what outscores the positive goes
        # raw inner products (normalize=false): the margin is 5 % of |s⁺| whatever the scale or sign
        (40.0, [45.0, 39.0, 37.0], 38.0, [2]),
        (-30.0, [-20.0, -29.0, -31.0, -32.0], -31.5, [3]),
    ],
)
def test_relative_margin_never_lies_above_the_positive(s_pos, scores, threshold, kept):
    table = np.array([scores])
    none = np.zeros_like(table, dtype=bool)
    cfg = SelectionConfig(num_negatives=8, margin="relative", relative=0.95)
    sel = select_negatives(table, none, none, np.array([s_pos]), cfg)
    assert sel.threshold[0] == pytest.approx(threshold) and sel.threshold[0] <= s_pos
    assert sel.kept[0].nonzero()[0].tolist() == kept


def test_absolute_margin_by_hand():
    # t = 0.80 − 0.1 = 0.70: 0.70 itself is not above the threshold, so it stays
    sel = select(num_negatives=8, margin="absolute", absolute=0.1)
    assert sel.negatives[0][sel.negatives[0] >= 0].tolist() == [5, 6, 7]


def test_adaptive_margin_by_hand():
    # usable after positive/duplicate: scores 0.90, 0.78, 0.75, 0.70, 0.60, 0.50; top m=3 -> μ = 0.81
    # gap 0.80 − 0.81 = −0.01 -> λ·gap clipped up to δ_min = 0.02 -> t = 0.78 (0.78 stays, 0.90 goes)
    cfg = dict(margin="adaptive", adaptive_scale=0.5, adaptive_top=3, adaptive_min=0.02, adaptive_max=0.2)
    assert select(**cfg).threshold[0] == pytest.approx(0.78)
    # an easy query: same candidates, positive at 0.95 -> μ = 0.81, gap 0.14 -> δ = 0.07 -> t = 0.88
    usable = ~(POSITIVE | DUPLICATE)
    t = margin_threshold(SCORES, usable, np.array([0.95]), SelectionConfig(**cfg))
    assert t[0] == pytest.approx(0.88)
    # a very easy one: the margin stops at δ_max
    t = margin_threshold(SCORES, usable, np.array([2.0]), SelectionConfig(**cfg))
    assert t[0] == pytest.approx(1.8)


def test_adaptive_is_per_query():
    scores = np.array([[0.9, 0.5, 0.4, 0.3], [0.9, 0.89, 0.88, 0.87]])
    usable = np.ones_like(scores, dtype=bool)
    cfg = SelectionConfig(margin="adaptive", adaptive_scale=1.0, adaptive_top=3, adaptive_min=0.0, adaptive_max=1.0)
    t = margin_threshold(scores, usable, np.array([0.95, 0.95]), cfg)
    # μ = 0.6 -> δ = 0.35 -> t = 0.60 ; μ = 0.89 -> δ = 0.06 -> t = 0.89
    np.testing.assert_allclose(t, [0.60, 0.89])


def test_random_sampling_is_seeded_and_stays_in_rank_order():
    scores = np.tile(np.linspace(0.9, 0.1, 50), (4, 1))
    none = np.zeros_like(scores, dtype=bool)
    runs = [
        select_negatives(scores, none, none, np.ones(4), SelectionConfig(num_negatives=5, sampling="random", seed=s))
        for s in (0, 0, 1)
    ]
    assert np.array_equal(runs[0].negatives, runs[1].negatives)
    assert not np.array_equal(runs[0].negatives, runs[2].negatives)
    for row in runs[0].negatives:
        assert len(set(row)) == 5 and list(row) == sorted(row)
    assert len({tuple(r) for r in runs[0].negatives}) > 1  # queries do not all get the same draw


def test_missing_candidates_and_short_lists():
    scores = np.array([[0.5, 0.4, -np.inf]])  # a corpus with 2 documents, K = 3
    none = np.zeros_like(scores, dtype=bool)
    sel = select_negatives(scores, none, none, np.array([0.9]), SelectionConfig(num_negatives=4))
    assert sel.negatives.tolist() == [[0, 1, -1, -1]]
    assert sel.sampled().tolist() == [[True, True, False]]  # a −1 slot never marks (or unmarks) column 0
    assert sel.counts()["sampled"] == 2 and sel.counts()["dropped_window"] == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"margin": "fuzzy"}, "margin must be one of"),
        ({"sampling": "best"}, "sampling must be one of"),
        ({"num_negatives": 0}, "num_negatives"),
        ({"min_rank": 10, "max_rank": 5}, "min_rank"),
        ({"relative": 1.5}, "relative"),
        ({"absolute": -0.1}, "absolute"),
        ({"adaptive_min": 0.3, "adaptive_max": 0.2}, "adaptive"),
    ],
)
def test_bad_selection_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SelectionConfig(**kwargs).check()


# ----------------------------------------------------------------------------------------------- candidates
def test_candidates_flag_positives_duplicates_and_score_positives():
    from embedlab.mining.candidates import canonical_rows, flag_candidates, later_repeats, retrieve

    def build_candidates(q, d, texts, positives, k):
        return flag_candidates(retrieve(q, d, k), q, d, texts, positives)

    assert canonical_rows(["a", "b", "a", "c", "b"]).tolist() == [0, 1, 0, 3, 1]
    assert later_repeats(np.array([[3, 1, 3, 2, 1]])).tolist() == [[False, False, True, False, True]]
    # 1-d "embeddings" along a line: the ranking is by the document's value
    docs = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]], dtype=np.float32)
    texts = ["x", "pos", "pos", "y", "x"]  # row 2 copies the positive, row 4 copies row 0
    table = build_candidates(np.array([[1.0]], dtype=np.float32), docs, texts, [[1]], k=5)
    assert table.index.tolist() == [[0, 1, 2, 3, 4]]
    assert table.is_positive.tolist() == [[False, True, False, False, False]]
    assert table.is_duplicate.tolist() == [[False, False, True, False, True]]
    np.testing.assert_allclose(table.positive_score, [0.8])
    # the positive outside the retrieved top-k still gets its exact score
    table = build_candidates(np.array([[1.0]], dtype=np.float32), docs, texts, [[3, 1]], k=2)
    np.testing.assert_allclose(table.positive_scores[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(table.positive_score, [0.6], rtol=1e-6)


def test_candidates_bad_input(caplog):
    from embedlab.mining.candidates import flag_candidates, retrieve

    q, d = np.ones((1, 2), dtype=np.float32), np.ones((2, 2), dtype=np.float32)
    with pytest.raises(ConfigError, match="corpus is empty"):
        retrieve(q, np.zeros((0, 2), dtype=np.float32), k=3)
    with pytest.raises(ConfigError, match="at least one positive"):
        flag_candidates(retrieve(q, d, 2), q, d, ["a", "b"], [[]])
    _, index = retrieve(q, d, k=10)
    assert index.shape == (1, 2) and "larger than the corpus" in caplog.text
