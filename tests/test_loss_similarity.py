"""The one similarity knob of the score-based losses (InfoNCE/focal, KL, MarginMSE) and the Matryoshka convention:
cosine scores are the cosines of the (renormalised) prefixes, dot scores are raw prefix dot products, LEAF compares
raw prefixes of the teacher's vector. Expected values are worked out in the comments on explicit small tensors."""

from __future__ import annotations

import math

import pytest
from tensors import random_away_from_zero, t
from torch.autograd import gradcheck

from embedlab.errors import ConfigError
from embedlab.losses import Embeddings, HardNegativeMixing, InfoNCE, KLDistill, Leaf, MarginMSE, Matryoshka, build_loss


def log_softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    lse = m + math.log(sum(math.exp(x - m) for x in xs))
    return [x - lse for x in xs]


# ------------------------------------------------------------------------------------------------------------------
# MarginMSE, B = 1, C = 3; q = (3, 4) (norm 5); candidates (2, 0), (0, 5), (−1, 0); teacher 1, 0.5, 0 -> margins
# t0 − t_c = 0.5, 1.0
#   cosine: s = 0.6, 0.8, −0.6 -> margins −0.2, 1.2 -> ((−0.2 − 0.5)² + (1.2 − 1.0)²) / 2 = (0.49 + 0.04) / 2 = 0.265
#   dot:    s = 6, 20, −3      -> margins −14, 9   -> ((−14 − 0.5)² + (9 − 1)²) / 2 = (210.25 + 64) / 2 = 137.125
# ------------------------------------------------------------------------------------------------------------------
Q, CANDS, TEACHER = [[3.0, 4.0]], [[[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]]], [[1.0, 0.5, 0.0]]


def margin_batch(extra: float | None = None) -> Embeddings:
    """The example above; with `extra`, every vector gets a third coordinate that a dim-2 prefix drops."""
    if extra is None:
        return Embeddings(query=t(Q), candidates=t(CANDS), teacher_scores=t(TEACHER))
    q = [[*row, extra] for row in Q]
    c = [[[*v, extra * (i + 2)] for i, v in enumerate(row)] for row in CANDS]
    return Embeddings(query=t(q), candidates=t(c), teacher_scores=t(TEACHER))


def test_margin_mse_scores_with_cosine_by_default():
    out = MarginMSE()(margin_batch())
    assert out.value.item() == pytest.approx(0.265, abs=1e-12)
    assert out.logs["student_margin"] == pytest.approx(0.5, abs=1e-12)  # (−0.2 + 1.2) / 2
    assert out.logs["teacher_margin"] == pytest.approx(0.75, abs=1e-12)


def test_margin_mse_dot_hand_value():
    out = MarginMSE(similarity="dot")(margin_batch())
    assert out.value.item() == pytest.approx(137.125, abs=1e-12)
    assert out.logs["student_margin"] == pytest.approx(-2.5, abs=1e-12)  # (−14 + 9) / 2


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_margin_mse_gradcheck(similarity):
    q = random_away_from_zero(2, 3, seed=7).requires_grad_(True)
    c = random_away_from_zero(2, 4, 3, seed=8).requires_grad_(True)
    scores = t([[2.0, 0.5, -1.0, 1.0], [0.7, 0.3, 0.9, -0.4]])
    loss = MarginMSE(similarity=similarity)
    assert gradcheck(lambda q, c: loss(Embeddings(query=q, candidates=c, teacher_scores=scores)).value, (q, c))


# ------------------------------------------------------------------------------------------------------------------
# Matryoshka at a truncated dim: the example above with a third coordinate 7 (query) / 14, 21, 28 (candidates)
# ------------------------------------------------------------------------------------------------------------------
def test_cosine_score_at_a_truncated_dim_is_the_cosine_of_the_renormalised_prefixes():
    emb = margin_batch(extra=7.0)
    assert MarginMSE()(emb).value.item() != pytest.approx(0.265)  # the third coordinate matters at full size
    out = Matryoshka(MarginMSE(), [2])(emb)
    assert out.value.item() == pytest.approx(0.265, abs=1e-12)  # cosines 0.6, 0.8, −0.6 of the 2-d prefixes


def test_dot_score_at_a_truncated_dim_is_the_raw_prefix_dot_product():
    out = Matryoshka(MarginMSE(similarity="dot"), [2])(margin_batch(extra=7.0))
    assert out.value.item() == pytest.approx(137.125, abs=1e-12)


def test_leaf_at_a_truncated_dim_compares_raw_prefixes_of_the_teacher():
    # s = (1, 2, 5), t = (1, 0, 0). dim 2, raw: ‖(1, 2) − (1, 0)‖² = 4. normalize: 2 − 2 cos((1, 2), (1, 0)) = 2 − 2/√5
    emb = Embeddings(query=t([[1.0, 2.0, 5.0]]), teacher=t([[1.0, 0.0, 0.0]]))
    assert Matryoshka(Leaf(), [2])(emb).value.item() == pytest.approx(4.0, abs=1e-12)
    assert Matryoshka(Leaf(normalize=True), [2])(emb).value.item() == pytest.approx(2 - 2 / math.sqrt(5), abs=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# KL and InfoNCE with dot scores
# ------------------------------------------------------------------------------------------------------------------
def test_kl_distill_dot_hand_value():
    # q = (1, 0); candidates (2, 0), (0, 1), (0.6, 0.8): dots 2, 0, 0.6 (cosines would be 1, 0, 0.6); τ_s = 0.5, τ_t = 2
    emb = Embeddings(
        query=t([[1.0, 0.0]]), candidates=t([[[2.0, 0.0], [0.0, 1.0], [0.6, 0.8]]]), teacher_scores=t([[3.0, 1.0, 2.0]])
    )
    out = KLDistill(student_temperature=0.5, teacher_temperature=2.0, similarity="dot")(emb)
    log_s, log_t = log_softmax([4.0, 0.0, 1.2]), log_softmax([1.5, 0.5, 1.0])
    expected = sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_t, log_s, strict=True))
    assert out.value.item() == pytest.approx(expected, abs=1e-12)


def test_infonce_dot_hand_value():
    # q0 = (2, 0), q1 = (0, 1); p0 = (1, 0), p1 = (1, 1); τ = 1. Dots: q0·p = 2, 2; q1·p = 0, 1.
    #   loss0 = −log(e² / (e² + e²)) = log 2;  loss1 = −log(e / (1 + e)) = log(1 + e⁻¹)
    emb = Embeddings(query=t([[2.0, 0.0], [0.0, 1.0]]), positive=t([[1.0, 0.0], [1.0, 1.0]]))
    out = InfoNCE(temperature=1.0, similarity="dot")(emb)
    assert out.value.item() == pytest.approx((math.log(2) + math.log(1 + math.exp(-1))) / 2, abs=1e-12)
    # cosine: q0·p = 1, 1/√2; q1·p = 0, 1/√2
    cosine = (-log_softmax([1.0, 1 / math.sqrt(2)])[0] - log_softmax([0.0, 1 / math.sqrt(2)])[1]) / 2
    assert InfoNCE(temperature=1.0)(emb).value.item() == pytest.approx(cosine, abs=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# The knob through the config
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["infonce", "focal_infonce", "kl_distill", "margin_mse"])
def test_similarity_knob_is_built_and_checked(name):
    assert build_loss({name: {"similarity": "dot"}}).terms[name].similarity == "dot"
    assert build_loss({name: {}}).terms[name].similarity == "cosine"
    with pytest.raises(ConfigError, match=rf"loss.{name}: similarity must be one of cosine, dot, got 'cos'"):
        build_loss({name: {"similarity": "cos"}})


def test_hard_negative_mixing_needs_cosine():
    with pytest.raises(ConfigError, match=r"mixing.*cosine"):
        InfoNCE(similarity="dot", mixing=HardNegativeMixing())
