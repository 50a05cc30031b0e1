"""The `Embeddings` record, LEAF, KL distillation, MarginMSE, Matryoshka and the config-built weighted sum.

Expected values are worked out in the comments or computed with `math` on explicit floats; gradients are checked
with `torch.autograd.gradcheck` in float64. InfoNCE and hard-negative mixing live in test_losses_contrastive.py, the
similarity knob (cosine | dot) and its Matryoshka convention in test_loss_similarity.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from embedlab.errors import ConfigError
from embedlab.losses import (
    LOSSES,
    Embeddings,
    HardNegativeMixing,
    InfoNCE,
    KLDistill,
    Leaf,
    MarginMSE,
    Matryoshka,
    WeightedSum,
    build_loss,
)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def rand(*shape: int, seed: int, grad: bool = False) -> torch.Tensor:
    """float64 vectors with norms in [1, 2] (away from zero, where cosine normalisation is smooth)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True) * (1 + torch.rand(*shape[:-1], 1, generator=g, dtype=torch.float64))
    return x.requires_grad_(grad)


def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def log_softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    lse = m + math.log(sum(math.exp(x - m) for x in xs))
    return [x - lse for x in xs]


def ref_kl(queries, candidates, teacher_scores, tau_s: float, tau_t: float) -> float:
    """(1/B) Σ_i Σ_c P^t (log P^t − log P^s) in plain Python."""
    total = 0.0
    for q, cands, ts in zip(queries, candidates, teacher_scores, strict=True):
        log_s = log_softmax([cos(q, c) / tau_s for c in cands])
        log_t = log_softmax([x / tau_t for x in ts])
        total += sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_t, log_s, strict=True))
    return total / len(queries)


def ref_infonce(queries, positives, tau: float) -> float:
    """Plain InfoNCE over the in-batch positives only (no hard negatives, no mask)."""
    total = 0.0
    for i, q in enumerate(queries):
        total -= log_softmax([cos(q, p) / tau for p in positives])[i]
    return total / len(queries)


# ------------------------------------------------------------------------------------------------------------------
# Embeddings
# ------------------------------------------------------------------------------------------------------------------
def test_documents_are_positives_then_negatives_row_major():
    pos = t([[1.0, 0.0], [2.0, 0.0]])
    neg = t([[[3.0, 0.0], [4.0, 0.0], [5.0, 0.0]], [[6.0, 0.0], [7.0, 0.0], [8.0, 0.0]]])  # [B=2, K=3, D=2]
    docs = Embeddings(query=pos, positive=pos, negatives=neg).documents()
    assert docs[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert torch.equal(Embeddings(positive=pos).documents(), pos)


def test_truncated_cuts_student_fields_and_same_size_teacher():
    x = torch.arange(2 * 4, dtype=torch.float64).reshape(2, 4)
    emb = Embeddings(
        query=x,
        positive=x + 1,
        negatives=torch.stack([x, x], 1),
        candidates=torch.stack([x] * 3, 1),
        teacher=x + 2,
        teacher_scores=t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
    )
    small = emb.truncated(2)
    assert small.query.tolist() == [[0.0, 1.0], [4.0, 5.0]]
    assert small.positive.tolist() == [[1.0, 2.0], [5.0, 6.0]]
    assert small.negatives.shape == (2, 2, 2) and small.candidates.shape == (2, 3, 2)
    assert small.teacher.tolist() == [[2.0, 3.0], [6.0, 7.0]]  # same size as the student: same nested space
    assert torch.equal(small.teacher_scores, emb.teacher_scores)  # scores are not embeddings
    assert emb.query.shape == (2, 4)  # the original is untouched
    other = Embeddings(query=x, teacher=torch.zeros(2, 6, dtype=torch.float64)).truncated(2)
    assert other.teacher.shape == (2, 6)  # a teacher of another size is not the student's space


def test_float32_casts_vectors_and_scores_but_not_the_mask():
    x = torch.tensor([[0.1, 0.2]], dtype=torch.bfloat16)
    mask = torch.tensor([[True]])
    emb = Embeddings(query=x, positive=x, teacher_scores=torch.ones(1, 3, dtype=torch.float16), document_mask=mask)
    out = emb.float32()
    assert out.query.dtype == out.positive.dtype == out.teacher_scores.dtype == torch.float32
    assert out.document_mask is mask and out.negatives is None
    assert torch.equal(out.query, x.float())


def test_missing_fields_are_a_config_error():
    with pytest.raises(ConfigError, match="teacher"):
        Leaf()(Embeddings(query=t([[1.0, 2.0]])))
    with pytest.raises(ConfigError, match="teacher_scores"):
        KLDistill()(Embeddings(query=t([[1.0, 2.0]]), candidates=t([[[1.0, 2.0]]])))


# ------------------------------------------------------------------------------------------------------------------
# LEAF
#   s0 = (1, 2), t0 = (1, 0): ‖s0 − t0‖² = 0 + 4 = 4;   cos = 1/√5
#   s1 = (0, 1), t1 = (3, 4): ‖s1 − t1‖² = 9 + 9 = 18;  cos = 4/5
#   raw: (4 + 18) / 2 = 11;   normalized: mean(2 − 2 cos) = 2 − (1/√5 + 0.8)
# ------------------------------------------------------------------------------------------------------------------
LEAF_S, LEAF_T = [[1.0, 2.0], [0.0, 1.0]], [[1.0, 0.0], [3.0, 4.0]]


def test_leaf_raw_squared_l2():
    out = Leaf()(Embeddings(query=t(LEAF_S), teacher=t(LEAF_T)))
    assert out.value.item() == pytest.approx(11.0, abs=1e-12)
    assert out.logs["cosine_to_teacher"] == pytest.approx((1 / math.sqrt(5) + 0.8) / 2, abs=1e-12)


def test_leaf_normalized_is_two_minus_two_cosine():
    out = Leaf(normalize=True)(Embeddings(query=t(LEAF_S), teacher=t(LEAF_T)))
    assert out.value.item() == pytest.approx(2 - (1 / math.sqrt(5) + 0.8), abs=1e-12)
    assert out.logs["cosine_to_teacher"] == pytest.approx((1 / math.sqrt(5) + 0.8) / 2, abs=1e-12)


@pytest.mark.parametrize("normalize", [False, True])
def test_leaf_gradcheck(normalize):
    s, teacher = rand(3, 4, seed=1, grad=True), rand(3, 4, seed=2, grad=True)
    loss = Leaf(normalize=normalize)
    assert gradcheck(lambda s, tt: loss(Embeddings(query=s, teacher=tt)).value, (s, teacher))


# ------------------------------------------------------------------------------------------------------------------
# KL distillation, B = 1, C = 3, τ_s = 0.5, τ_t = 2
#   q = (1, 0); candidates (2, 0), (0, 1), (0.6, 0.8) -> cosines 1, 0, 0.6 -> student logits 2, 0, 1.2
#   teacher scores 3, 1, 2 -> /τ_t = 1.5, 0.5, 1
#   L = Σ_c P^t_c (log P^t_c − log P^s_c)   (KL(teacher ‖ student), not the reverse)
# ------------------------------------------------------------------------------------------------------------------
def test_kl_distill_hand_value():
    emb = Embeddings(
        query=t([[1.0, 0.0]]), candidates=t([[[2.0, 0.0], [0.0, 1.0], [0.6, 0.8]]]), teacher_scores=t([[3.0, 1.0, 2.0]])
    )
    out = KLDistill(student_temperature=0.5, teacher_temperature=2.0)(emb)
    log_s, log_t = log_softmax([2.0, 0.0, 1.2]), log_softmax([1.5, 0.5, 1.0])
    expected = sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_t, log_s, strict=True))
    reverse = sum(math.exp(ls) * (ls - lt) for lt, ls in zip(log_t, log_s, strict=True))
    assert abs(expected - reverse) > 1e-3  # the example tells the two directions apart
    assert out.value.item() == pytest.approx(expected, abs=1e-12)
    assert out.logs["top1_agreement"] == 1.0  # both rank candidate 0 first


def test_kl_distill_averages_over_queries_not_entries():
    q, c = rand(2, 3, seed=3), rand(2, 4, 3, seed=4)
    scores = t([[5.0, 1.0, 2.0, 0.0], [0.0, 3.0, 1.0, 1.0]])
    out = KLDistill(student_temperature=0.2, teacher_temperature=1.5)(
        Embeddings(query=q, candidates=c, teacher_scores=scores)
    )
    expected = ref_kl(q.tolist(), c.tolist(), scores.tolist(), 0.2, 1.5)
    assert out.value.item() == pytest.approx(expected, rel=1e-10)


def test_kl_distill_is_zero_when_the_distributions_agree():
    # Teacher scores = student cosines · τ_t/τ_s (+ any constant per row): the same softmax.
    q, c = [[1.0, 0.0]], [[[2.0, 0.0], [0.0, 1.0], [0.6, 0.8]]]
    teacher = [[(x * 2.0 / 0.5) + 7.0 for x in (1.0, 0.0, 0.6)]]
    out = KLDistill(0.5, 2.0)(Embeddings(query=t(q), candidates=t(c), teacher_scores=t(teacher)))
    assert out.value.item() == pytest.approx(0.0, abs=1e-12)


def test_kl_distill_gradcheck():
    q, c = rand(2, 3, seed=5, grad=True), rand(2, 4, 3, seed=6, grad=True)
    scores = t([[1.0, 0.5, -1.0, 2.0], [0.0, 0.3, 0.2, -0.4]])
    loss = KLDistill(0.3, 0.7)
    assert gradcheck(lambda q, c: loss(Embeddings(query=q, candidates=c, teacher_scores=scores)).value, (q, c))


@pytest.mark.parametrize("kwargs", [{"student_temperature": 0.0}, {"teacher_temperature": -1.0}])
def test_kl_distill_bad_temperatures(kwargs):
    with pytest.raises(ConfigError, match="temperature"):
        KLDistill(**kwargs)


# ------------------------------------------------------------------------------------------------------------------
# MarginMSE with similarity=dot (cosine, the default, and gradients: test_loss_similarity.py), B = 2, C = 3
#   q0 = (1, 2); c = (1, 0), (0, 1), (1, 1) -> s = 1, 2, 3; margins s0 − s_c = −1, −2; teacher 5, 3, 4 -> 2, 1
#       squared errors (−1 − 2)² = 9, (−2 − 1)² = 9
#   q1 = (0, 1); c = (0, 2), (1, 0), (0, −1) -> s = 2, 0, −1; margins 2, 3; teacher 1, 0, 0 -> 1, 1
#       squared errors (2 − 1)² = 1, (3 − 1)² = 4
#   L = (9 + 9 + 1 + 4) / (2 · 2) = 5.75; mean student margin (−1 − 2 + 2 + 3)/4 = 0.5, teacher (2+1+1+1)/4 = 1.25
# ------------------------------------------------------------------------------------------------------------------
def test_margin_mse_hand_value():
    emb = Embeddings(
        query=t([[1.0, 2.0], [0.0, 1.0]]),
        candidates=t([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[0.0, 2.0], [1.0, 0.0], [0.0, -1.0]]]),
        teacher_scores=t([[5.0, 3.0, 4.0], [1.0, 0.0, 0.0]]),
    )
    out = MarginMSE(similarity="dot")(emb)
    assert out.value.item() == pytest.approx(5.75, abs=1e-12)
    assert out.logs["student_margin"] == pytest.approx(0.5, abs=1e-12)
    assert out.logs["teacher_margin"] == pytest.approx(1.25, abs=1e-12)


def test_margin_mse_needs_a_negative():
    with pytest.raises(ConfigError, match="margin_mse"):
        MarginMSE()(Embeddings(query=t([[1.0, 0.0]]), candidates=t([[[1.0, 0.0]]]), teacher_scores=t([[1.0]])))


# ------------------------------------------------------------------------------------------------------------------
# Matryoshka
# ------------------------------------------------------------------------------------------------------------------
def test_matryoshka_is_the_weighted_sum_over_prefixes():
    emb = Embeddings(query=rand(3, 4, seed=9), positive=rand(3, 4, seed=10))
    inner = InfoNCE(temperature=0.1)
    out = Matryoshka(inner, [2, 4], [1.0, 0.5])(emb)
    at2, at4 = inner(emb.truncated(2)).value.item(), inner(emb.truncated(4)).value.item()
    assert at2 != pytest.approx(at4)  # truncation matters in this example
    assert out.value.item() == pytest.approx(1.0 * at2 + 0.5 * at4, rel=1e-12)
    assert out.logs == pytest.approx({"dim_2": at2, "dim_4": at4})
    # The same numbers from plain Python on the explicit prefixes:
    ql, pl = emb.query.tolist(), emb.positive.tolist()
    by_hand = 1.0 * ref_infonce([r[:2] for r in ql], [r[:2] for r in pl], 0.1) + 0.5 * ref_infonce(ql, pl, 0.1)
    assert out.value.item() == pytest.approx(by_hand, rel=1e-10)
    assert Matryoshka(inner, [2, 4])(emb).value.item() == pytest.approx(at2 + at4, rel=1e-12)  # default weights 1


def test_matryoshka_truncates_a_same_size_teacher_for_leaf():
    # s = (1, 2, 5), t = (1, 0, 0) at dim 2: ‖(1, 2) − (1, 0)‖² = 4 (dim 3 would add 25).
    emb = Embeddings(query=t([[1.0, 2.0, 5.0]]), teacher=t([[1.0, 0.0, 0.0]]))
    out = Matryoshka(Leaf(), [2, 3], [1.0, 0.1])(emb)
    assert out.value.item() == pytest.approx(4.0 + 0.1 * 29.0, abs=1e-12)


def test_matryoshka_knobs():
    loss = Matryoshka(InfoNCE(), [8, 16])
    assert loss.requires == InfoNCE.requires
    loss.check_dim(16)
    with pytest.raises(ConfigError, match="outside"):
        loss.check_dim(12)
    with pytest.raises(ConfigError, match="weights"):
        Matryoshka(InfoNCE(), [8, 16], [1.0])
    with pytest.raises(ConfigError, match="empty"):
        Matryoshka(InfoNCE(), [])


# ------------------------------------------------------------------------------------------------------------------
# WeightedSum / build_loss
# ------------------------------------------------------------------------------------------------------------------
def test_build_loss_weighted_sum_matches_hand_value():
    q, p, c = rand(3, 4, seed=11), rand(3, 4, seed=12), rand(3, 3, 4, seed=13)
    scores = t([[3.0, 1.0, 0.0], [0.5, 2.0, 1.0], [1.0, 1.0, 4.0]])
    emb = Embeddings(query=q, positive=p, candidates=c, teacher_scores=scores)
    loss = build_loss({"infonce": {"weight": 1.0, "temperature": 0.05}, "kl_distill": {"weight": 0.5}})
    assert isinstance(loss, WeightedSum)
    out = loss(emb)
    infonce = ref_infonce(q.tolist(), p.tolist(), 0.05)
    kl = ref_kl(q.tolist(), c.tolist(), scores.tolist(), 0.05, 1.0)  # kl_distill defaults τ_s = 0.05, τ_t = 1
    assert out.value.item() == pytest.approx(1.0 * infonce + 0.5 * kl, rel=1e-10)
    assert out.logs["infonce"] == pytest.approx(infonce, rel=1e-10)
    assert out.logs["kl_distill"] == pytest.approx(kl, rel=1e-10)
    assert {"infonce/accuracy", "kl_distill/top1_agreement"} <= set(out.logs)
    assert loss.requires == {"query", "positive", "candidates", "teacher_scores"}


def test_build_loss_rejects_unknown_names_and_keys():
    with pytest.raises(ConfigError, match=r"known losses: .*infonce.*kl_distill.*leaf"):
        build_loss({"infonse": {}})
    with pytest.raises(ConfigError, match="temprature"):
        build_loss({"infonce": {"temprature": 0.05}})
    with pytest.raises(ConfigError, match="foo"):
        build_loss({"margin_mse": {"foo": 1}})
    with pytest.raises(ConfigError, match=r"loss.infonce.temperature: Value 'warm' .* Float"):  # the schema's types
        build_loss({"infonce": {"temperature": "warm"}})
    with pytest.raises(ConfigError, match="no loss"):
        build_loss({})
    with pytest.raises(ConfigError, match="temperature"):
        build_loss({"infonce": {"temperature": 0}})


def test_build_loss_matryoshka_wraps():
    loss = build_loss({"leaf": {"matryoshka_dims": [2, 4], "matryoshka_weights": [0.5, 1.0]}})
    inner = loss.terms["leaf"]
    assert isinstance(inner, Matryoshka) and isinstance(inner.inner, Leaf)
    assert inner.dims == [2, 4] and inner.weights == [0.5, 1.0]
    with pytest.raises(ConfigError, match="outside"):
        loss.check_dim(3)
    assert not isinstance(build_loss({"leaf": {"matryoshka_dims": None}}).terms["leaf"], Matryoshka)


@pytest.mark.parametrize("name", ["infonce", "focal_infonce"])
def test_build_loss_hn_mixing_for_infonce(name):
    loss = build_loss({name: {"hn_mixing": {"enabled": True, "num": 4, "top_k": 2}}}).terms[name]
    assert isinstance(loss, InfoNCE) and isinstance(loss.mixing, HardNegativeMixing)
    assert (loss.mixing.num, loss.mixing.top_k) == (4, 2)
    assert build_loss({name: {"hn_mixing": {"enabled": False, "num": 4}}}).terms[name].mixing is None


def test_build_loss_hn_mixing_rejected_elsewhere_and_checked():
    # only InfoNCE's settings have the key (the same schema rejects it in a composed config)
    with pytest.raises(ConfigError, match=r"loss.kl_distill.hn_mixing: Key 'hn_mixing' not in 'KLDistillSettings'"):
        build_loss({"kl_distill": {"hn_mixing": {"enabled": True, "num": 4, "top_k": 2}}})
    with pytest.raises(ConfigError, match="num"):
        build_loss({"infonce": {"hn_mixing": {"enabled": True, "num": 0}}})
    with pytest.raises(ConfigError, match="nmu"):
        build_loss({"infonce": {"hn_mixing": {"enabled": True, "nmu": 4}}})


def test_focal_infonce_is_infonce_with_gamma():
    assert LOSSES["focal_infonce"] is InfoNCE
    assert build_loss({"focal_infonce": {"gamma": 1.0}}).terms["focal_infonce"].gamma == 1.0
    with pytest.raises(ConfigError, match="gamma"):
        build_loss({"focal_infonce": {"gamma": -1.0}})


def test_weighted_sum_requires_is_the_union():
    loss = build_loss({"leaf": {}, "margin_mse": {"weight": 2.0}})
    assert loss.requires == {"query", "teacher", "candidates", "teacher_scores"}
    with pytest.raises(ConfigError, match=r"Leaf.*needs \[.teacher.\]"):
        loss(
            Embeddings(query=t([[1.0, 0.0]]), candidates=t([[[1.0, 0.0], [0.0, 1.0]]]), teacher_scores=t([[1.0, 0.0]]))
        )
