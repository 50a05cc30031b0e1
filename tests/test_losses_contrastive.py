"""InfoNCE (plain, masked, symmetric, GTE extra negatives, focal); mixing inside InfoNCE is in test_hn_mixing.py.

Expected values come from a plain-Python reference (`ref_infonce`, written with `math` on explicit floats, no torch)
and, for the smallest case, from numbers worked out in the comments.
"""

from __future__ import annotations

import math

import pytest
import torch
from tensors import random_batch, t
from torch.autograd import gradcheck

from embedlab.errors import ConfigError
from embedlab.losses import Embeddings, InfoNCE

INF = float("inf")


# ------------------------------------------------------------------------------------------------------------------
# Plain-Python reference.
# ------------------------------------------------------------------------------------------------------------------
def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def nll(target: float, others: list[float]) -> float:
    """−log softmax of `target` among [target] + others (a plain log-sum-exp)."""
    m = max([target, *others])
    return m + math.log(sum(math.exp(x - m) for x in [target, *others])) - target


def focal(loss_i: float, gamma: float) -> float:
    p = math.exp(-loss_i)
    return (1 - p) ** gamma * loss_i


def ref_infonce(
    queries, positives, negatives=None, *, tau, mask=None, gamma=0.0, symmetric=False, qq=False, dd=False
) -> float:
    """Mean over queries of −(1−p)^γ log p; pool = positives, then negatives row-major; masked columns dropped."""
    b = len(queries)
    pool = list(positives) + [n for row in (negatives or []) for n in row]

    def allowed(i: int, j: int) -> bool:
        return mask is None or bool(mask[i][j])

    forward = []
    for i, q in enumerate(queries):
        target = cos(q, positives[i]) / tau
        others = [cos(q, d) / tau for j, d in enumerate(pool) if j != i and allowed(i, j)]
        if qq:
            others += [cos(q, queries[j]) / tau for j in range(b) if j != i]
        if dd:
            others += [cos(positives[i], positives[j]) / tau for j in range(b) if j != i and allowed(i, j)]
        forward.append(focal(nll(target, others), gamma))
    loss = sum(forward) / b
    if not symmetric:
        return loss
    back = []
    for j, p in enumerate(positives):  # positive j against every query; query i drops out where mask[i][j] is False
        others = [cos(p, queries[i]) / tau for i in range(b) if i != j and allowed(i, j)]
        back.append(focal(nll(cos(p, queries[j]) / tau, others), gamma))
    return (loss + sum(back) / b) / 2


def as_lists(q, p, n):
    return q.tolist(), p.tolist(), (n.tolist() if n is not None else None)


# ------------------------------------------------------------------------------------------------------------------
# The hand example: B = 2 queries, K = 1 hard negative each, D = 2, τ = 0.5.
#   q0 = (2, 0) -> (1, 0)         q1 = (0, 1)
#   p0 = (0.8, 0.6)  p1 = (0, 3) -> (0, 1)  n0 = (0.96, 0.28)  n1 = (-0.6, 0.8)   (all unit norm after normalising)
#   pool (columns) = p0, p1, n0, n1
#   cosines q0: 0.8, 0, 0.96, -0.6   -> logits /0.5: 1.6, 0, 1.92, -1.2   target col 0 (n0 beats it: a miss)
#   cosines q1: 0.6, 1, 0.28, 0.8    -> logits /0.5: 1.2, 2, 0.56, 1.6    target col 1 (a hit)
#   loss0 = log(e^1.6 + e^0 + e^1.92 + e^-1.2) − 1.6
#   loss1 = log(e^1.2 + e^2 + e^0.56 + e^1.6) − 2
#   InfoNCE = (loss0 + loss1) / 2, accuracy = 1/2
# ------------------------------------------------------------------------------------------------------------------
Q = [[2.0, 0.0], [0.0, 1.0]]
P = [[0.8, 0.6], [0.0, 3.0]]
N = [[[0.96, 0.28]], [[-0.6, 0.8]]]
LOSS0 = math.log(math.exp(1.6) + math.exp(0.0) + math.exp(1.92) + math.exp(-1.2)) - 1.6
LOSS1 = math.log(math.exp(1.2) + math.exp(2.0) + math.exp(0.56) + math.exp(1.6)) - 2.0


def hand_batch(**extra) -> Embeddings:
    return Embeddings(query=t(Q), positive=t(P), negatives=t(N), **extra)


def test_infonce_hand_value_and_logs():
    out = InfoNCE(temperature=0.5)(hand_batch())
    assert out.value.item() == pytest.approx((LOSS0 + LOSS1) / 2, abs=1e-12)
    assert out.value.item() == pytest.approx(ref_infonce(Q, P, N, tau=0.5), abs=1e-12)
    assert out.logs["accuracy"] == 0.5
    assert out.logs["p_positive"] == pytest.approx((math.exp(-LOSS0) + math.exp(-LOSS1)) / 2, abs=1e-12)


def test_infonce_without_hard_negatives_uses_in_batch_positives():
    # Pool = p0, p1 only. q0 logits 1.6, 0 (target 1.6); q1 logits 1.2, 2 (target 2).
    out = InfoNCE(temperature=0.5)(Embeddings(query=t(Q), positive=t(P)))
    expected = (math.log(math.exp(1.6) + 1) - 1.6 + math.log(math.exp(1.2) + math.exp(2)) - 2) / 2
    assert out.value.item() == pytest.approx(expected, abs=1e-12)


def test_document_mask_acts_as_removing_the_column():
    # Query 1 masks n1 (column 3): pretend it is the same document as p1. Its row loses the e^1.6 term.
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    out = InfoNCE(temperature=0.5)(hand_batch(document_mask=mask))
    loss1_masked = math.log(math.exp(1.2) + math.exp(2.0) + math.exp(0.56)) - 2.0
    assert out.value.item() == pytest.approx((LOSS0 + loss1_masked) / 2, abs=1e-12)
    # Query 0 masks n0 (column 2), the negative that beat its positive: accuracy goes up to 1.
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    out = InfoNCE(temperature=0.5)(hand_batch(document_mask=mask))
    loss0_masked = math.log(math.exp(1.6) + math.exp(0.0) + math.exp(-1.2)) - 1.6
    assert out.value.item() == pytest.approx((loss0_masked + LOSS1) / 2, abs=1e-12)
    assert out.logs["accuracy"] == 1.0


def test_document_mask_never_hides_the_own_positive():
    plain = InfoNCE(temperature=0.5)(hand_batch()).value
    mask = torch.tensor([[False, True, True, True], [True, False, True, True]])  # the diagonal is ignored
    assert torch.equal(InfoNCE(temperature=0.5)(hand_batch(document_mask=mask)).value, plain)


def test_document_mask_of_wrong_shape_is_a_config_error():
    with pytest.raises(ConfigError, match="document_mask"):
        InfoNCE()(hand_batch(document_mask=torch.ones(2, 3, dtype=torch.bool)))


def test_symmetric_hand_value():
    # Document -> query: positive j against both queries.
    #   p0: cos(p0, q0) = 0.8, cos(p0, q1) = 0.6 -> logits 1.6, 1.2 (target 1.6)
    #   p1: cos(p1, q0) = 0,   cos(p1, q1) = 1   -> logits 0, 2     (target 2)
    back = (math.log(math.exp(1.6) + math.exp(1.2)) - 1.6 + math.log(1 + math.exp(2.0)) - 2.0) / 2
    out = InfoNCE(temperature=0.5, symmetric=True)(hand_batch())
    assert out.value.item() == pytest.approx(((LOSS0 + LOSS1) / 2 + back) / 2, abs=1e-12)
    assert out.logs["loss_doc_to_query"] == pytest.approx(back, abs=1e-12)


def test_query_query_and_doc_doc_hand_value():
    # query_query adds cos(q0, q1) = 0 for q0 and cos(q1, q0) = 0 for q1 -> a logit of 0 in each row.
    # doc_doc adds cos(p0, p1) = 0.6 -> logit 1.2 in both rows.
    loss0 = math.log(math.exp(1.6) + 1 + math.exp(1.92) + math.exp(-1.2) + 1 + math.exp(1.2)) - 1.6
    loss1 = math.log(math.exp(1.2) + math.exp(2.0) + math.exp(0.56) + math.exp(1.6) + 1 + math.exp(1.2)) - 2.0
    out = InfoNCE(temperature=0.5, query_query=True, doc_doc=True)(hand_batch())
    assert out.value.item() == pytest.approx((loss0 + loss1) / 2, abs=1e-12)


@pytest.mark.parametrize(
    ("options", "use_mask"),
    [
        ({}, False),
        ({}, True),
        ({"symmetric": True}, True),
        ({"query_query": True}, False),
        ({"doc_doc": True}, True),
        ({"query_query": True, "doc_doc": True, "symmetric": True}, True),
        ({"gamma": 1.0, "symmetric": True, "query_query": True}, True),
    ],
)
def test_infonce_matches_reference_on_random_inputs(options, use_mask):
    q, p, n = random_batch(3, 2, 4, seed=11)
    # 9 documents: p0 p1 p2 n00 n01 n10 n11 n20 n21. Query 0 treats p2 and n11 as duplicates, query 2 treats p0.
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[0, 2] = mask[0, 6] = mask[2, 0] = False
    mask = mask if use_mask else None
    out = InfoNCE(temperature=0.1, **options)(Embeddings(query=q, positive=p, negatives=n, document_mask=mask))
    ql, pl, nl = as_lists(q, p, n)
    ref = ref_infonce(
        ql,
        pl,
        nl,
        tau=0.1,
        mask=None if mask is None else mask.tolist(),
        gamma=options.get("gamma", 0.0),
        symmetric=options.get("symmetric", False),
        qq=options.get("query_query", False),
        dd=options.get("doc_doc", False),
    )
    assert out.value.item() == pytest.approx(ref, rel=1e-10)


def test_masked_duplicate_changes_value_like_a_removed_column():
    # n01 (column 3 of p0 p1 n00 n01 n10 n11) is masked for every query: the loss must equal InfoNCE over the pool
    # with that column deleted, written out here in plain Python.
    q, p, n = random_batch(2, 2, 3, seed=5)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 3] = False
    masked = InfoNCE(temperature=0.2)(Embeddings(query=q, positive=p, negatives=n, document_mask=mask)).value
    ql, pl, nl = as_lists(q, p, n)
    pool_without = [*pl, nl[0][0], nl[1][0], nl[1][1]]
    ref = (
        sum(
            nll(cos(ql[i], pl[i]) / 0.2, [cos(ql[i], d) / 0.2 for j, d in enumerate(pool_without) if j != i])
            for i in range(2)
        )
        / 2
    )
    assert masked.item() == pytest.approx(ref, rel=1e-10)
    unmasked = InfoNCE(temperature=0.2)(Embeddings(query=q, positive=p, negatives=n)).value
    assert masked.item() < unmasked.item()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"symmetric": True, "query_query": True, "doc_doc": True},
        {"gamma": 1.0},
        {"gamma": 2.0, "symmetric": True},
        {"gamma": 0.5},
    ],
)
def test_infonce_gradcheck(options):
    q, p, n = random_batch(3, 2, 4, seed=3, grad=True)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 0] = mask[1, 8] = False
    loss = InfoNCE(temperature=0.2, **options)

    def f(q, p, n):
        return loss(Embeddings(query=q, positive=p, negatives=n, document_mask=mask)).value

    assert gradcheck(f, (q, p, n))


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"temperature": -0.1}, {"gamma": -0.5}])
def test_infonce_bad_knobs(kwargs):
    with pytest.raises(ConfigError, match=r"temperature|gamma"):
        InfoNCE(**kwargs)


def test_infonce_needs_query_and_positive():
    with pytest.raises(ConfigError, match="positive"):
        InfoNCE()(Embeddings(query=t(Q)))


# ------------------------------------------------------------------------------------------------------------------
# Focal InfoNCE: w_i = (1 − p_i)^γ.
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"symmetric": True}, {"symmetric": True, "query_query": True}])
@pytest.mark.parametrize("k", [0, 3])
def test_focal_gamma_zero_is_exactly_infonce(options, k):
    # The focal formula at γ = 0 (weights (1 − p)^0 = 1) against InfoNCE written out in plain Python, unweighted:
    # the mean over rows of −log p (and the document→query mean for `symmetric`).
    q, p, n = random_batch(4, k, 8, seed=21)
    out = InfoNCE(temperature=0.1, gamma=0.0, **options)(Embeddings(query=q, positive=p, negatives=n))
    ql, pl, nl = as_lists(q, p, n)
    qq, sym = options.get("query_query", False), options.get("symmetric", False)
    forward = []
    pool = pl + [d for row in nl or [] for d in row]
    for i in range(4):
        others = [cos(ql[i], d) / 0.1 for j, d in enumerate(pool) if j != i]
        others += [cos(ql[i], ql[j]) / 0.1 for j in range(4) if qq and j != i]
        forward.append(nll(cos(ql[i], pl[i]) / 0.1, others))
    expected = sum(forward) / 4
    if sym:
        back = [nll(cos(pl[j], ql[j]) / 0.1, [cos(pl[j], ql[i]) / 0.1 for i in range(4) if i != j]) for j in range(4)]
        expected = (expected + sum(back) / 4) / 2
    assert out.value.item() == pytest.approx(expected, rel=1e-12)


def test_focal_gamma_two_hand_value():
    p0, p1 = math.exp(-LOSS0), math.exp(-LOSS1)
    expected = (-((1 - p0) ** 2) * math.log(p0) - (1 - p1) ** 2 * math.log(p1)) / 2
    assert InfoNCE(temperature=0.5, gamma=2.0)(hand_batch()).value.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_gamma_below_one_has_a_finite_gradient_when_p_rounds_to_one(dtype):
    # Two orthogonal pairs at τ = 0.01: each row's logits are 100 (its positive) and 0, so p = 1/(1 + e^−100) rounds to
    # 1 and 1 − p to 0. By hand, L = −(1 − p)^γ log p ≈ e^−100·(e^−100)^γ and dL/dq is of the same order: ~0.
    # d(x^γ)/dx is infinite at x = 0 for γ < 1; autograd multiplied it by the softmax's zero slope: NaN.
    q = torch.eye(2, dtype=dtype, requires_grad=True)
    out = InfoNCE(temperature=0.01, gamma=0.5)(Embeddings(query=q, positive=torch.eye(2, dtype=dtype)))
    out.value.backward()
    assert out.value.item() == pytest.approx(0.0, abs=1e-30)
    assert torch.isfinite(q.grad).all(), q.grad
    assert q.grad.abs().max().item() < 1e-15


def test_focal_weight_is_smaller_for_a_confident_example():
    # One query each, τ = 0.5, K = 2 (a batch of one: the pool is its positive and its negatives).
    # confident: q = (1, 0), p = (1, 0), negatives (0, 1), (-1, 0): logits 2, 0, -2 -> p ≈ 0.867
    # hard:      q = (1, 0), p = (0, 1), negatives (1, 0), (0.6, 0.8): logits 0, 2, 1.2 -> p ≈ 0.096
    confident = Embeddings(query=t([[1.0, 0.0]]), positive=t([[1.0, 0.0]]), negatives=t([[[0.0, 1.0], [-1.0, 0.0]]]))
    hard = Embeddings(query=t([[1.0, 0.0]]), positive=t([[0.0, 1.0]]), negatives=t([[[1.0, 0.0], [0.6, 0.8]]]))
    weights = {}
    for name, emb, logits in (("confident", confident, [2.0, 0.0, -2.0]), ("hard", hard, [0.0, 2.0, 1.2])):
        plain = InfoNCE(temperature=0.5)(emb).value.item()
        p = math.exp(logits[0]) / sum(math.exp(x) for x in logits)
        assert plain == pytest.approx(-math.log(p), abs=1e-12)
        weights[name] = InfoNCE(temperature=0.5, gamma=1.0)(emb).value.item() / plain  # = (1 − p)^1
        assert weights[name] == pytest.approx(1 - p, abs=1e-12)
    assert weights["confident"] < 0.2 < 0.8 < weights["hard"]
