"""Online hard-negative mixing (MoCHi, KaLM-V2): geometry of the synthetic negatives, masking, seeding, knobs."""

from __future__ import annotations

import math

import pytest
import torch
from tensors import random_batch, t
from test_losses_contrastive import nll
from torch.autograd import gradcheck

from embedlab.errors import ConfigError
from embedlab.losses import Embeddings, HardNegativeMixing, InfoNCE, build_loss
from embedlab.losses.hn_mixing import largest_beta

INF = float("inf")


# ------------------------------------------------------------------------------------------------------------------
# Hard-negative mixing.
# ------------------------------------------------------------------------------------------------------------------
def pool_inputs(b: int, k: int, d: int, seed: int, mask: torch.Tensor | None = None):
    """What InfoNCE hands the mixer: unit queries, unit pool documents, masked cosines."""
    q, p, n = random_batch(b, k, d, seed=seed)
    emb = Embeddings(query=q, positive=p, negatives=n)
    qn = torch.nn.functional.normalize(q, dim=-1)
    docs = torch.nn.functional.normalize(emb.documents(), dim=-1)
    scores = qn @ docs.T
    if mask is not None:
        scores = scores.masked_fill(~mask, -INF)
    return qn, docs, scores, emb


def top_valid(scores: torch.Tensor, i: int, k: int) -> list[int]:
    """Query i's k most similar allowed documents, its own positive (column i) excluded; plain Python."""
    row = [(s, j) for j, s in enumerate(scores[i].tolist()) if j != i and s != -INF]
    return [j for _, j in sorted(row, reverse=True)[:k]]


def lstsq_residual(basis: list[torch.Tensor], h: torch.Tensor) -> tuple[float, torch.Tensor]:
    a = torch.stack(basis, dim=1)  # [D, m]
    x = torch.linalg.lstsq(a, h.unsqueeze(1)).solution.squeeze(1)
    return (a @ x - h).norm().item(), x


def test_mixing_shape_unit_norm_detached_and_seeded():
    qn, docs, scores, _ = pool_inputs(3, 2, 8, seed=1)
    qn.requires_grad_(True)
    docs.requires_grad_(True)
    mix = HardNegativeMixing(num=5, top_k=3, generator=torch.Generator().manual_seed(0))
    out = mix(qn, docs, scores)
    assert out.shape == (3, 5 * 2, 8)
    assert not out.requires_grad
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 10, dtype=torch.float64))
    again = HardNegativeMixing(num=5, top_k=3, generator=torch.Generator().manual_seed(0))(qn, docs, scores)
    assert torch.equal(out, again)
    assert HardNegativeMixing(num=5, top_k=3, kinds=["query"])(qn, docs, scores).shape == (3, 5, 8)


def test_mixing_query_kind_lies_between_query_and_a_top_k_negative():
    qn, docs, scores, _ = pool_inputs(3, 3, 8, seed=2)  # D = 8: a random vector is never in a 2-d span by chance
    out = HardNegativeMixing(num=30, top_k=2, kinds=["query"], generator=torch.Generator().manual_seed(1))(
        qn, docs, scores
    )
    for i in range(3):
        top = top_valid(scores, i, 2)
        for h in out[i]:
            fits = []
            for c in top:
                residual, x = lstsq_residual([qn[i], docs[c]], h)
                if residual < 1e-9:
                    fits.append(x)
            assert fits, "synthetic query-kind negative outside span(q, top-k negative)"
            x = fits[0]
            assert x.min().item() >= -1e-9
            beta = (x[0] / (x[0] + x[1])).item()  # coefficient on q before normalisation
            assert 0.0 <= beta <= 0.5 + 1e-6


def test_mixing_negatives_kind_is_a_convex_mix_of_top_k_negatives():
    qn, docs, scores, _ = pool_inputs(3, 3, 8, seed=4)
    out = HardNegativeMixing(num=30, top_k=2, kinds=["negatives"], generator=torch.Generator().manual_seed(2))(
        qn, docs, scores
    )
    for i in range(3):
        basis = [docs[c] for c in top_valid(scores, i, 2)]
        for h in out[i]:
            residual, x = lstsq_residual(basis, h)
            assert residual < 1e-9
            assert x.min().item() >= -1e-9


def duplicate_case():
    """B = 2, K = 1, D = 3; pool p0 p1 n0 n1. For q0 its positive p0 is the most similar document and n0 (masked as a
    duplicate of p0) comes next; the only other candidates are p1 (cos 0) and n1 (cos ≈ 0.287, its hardest valid
    negative). For q1 its positive p1 is the most similar; its hardest valid negative is also n1 (cos ≈ 0.958)."""
    q = t([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    p = t([[1.0, 0.05, 0.0], [0.0, 0.1, 1.0]])
    n = t([[[0.98, 0.2, 0.0]], [[0.3, 0.0, 1.0]]])
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    return q, p, n, mask


@pytest.mark.parametrize("kinds", [["negatives"], ["negatives", "query"]])
def test_mixing_never_uses_own_positive_or_masked_documents(kinds):
    q, p, n, mask = duplicate_case()
    qn = torch.nn.functional.normalize(q, dim=-1)
    docs = torch.nn.functional.normalize(Embeddings(query=q, positive=p, negatives=n).documents(), dim=-1)
    scores = (qn @ docs.T).masked_fill(~mask, -INF)
    n1 = docs[3]
    # top_k = 1: every negatives-kind vector is normalize(α n1 + (1 − α) n1) = n1.
    out = HardNegativeMixing(num=6, top_k=1, kinds=kinds, generator=torch.Generator().manual_seed(0))(qn, docs, scores)
    torch.testing.assert_close(out[:, :6], n1.expand(2, 6, 3))
    # top_k = 3 asks for more than q0's two allowed negatives (p1, n1): the mixes stay in span(p1, n1), never n0/p0.
    out = HardNegativeMixing(num=20, top_k=3, kinds=["negatives"], generator=torch.Generator().manual_seed(0))(
        qn, docs, scores
    )
    for h in out[0]:
        assert lstsq_residual([docs[1], docs[3]], h)[0] < 1e-9


def test_mixing_with_no_allowed_negative_adds_nothing():
    # Both queries have the same positive document (B = 2, no hard negatives): each query's only other document is
    # masked, so there is nothing to mix; a synthetic negative here could only be built from the query's positive.
    q = t([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = t([[1.0, 0.2, 0.0], [0.9, 0.1, 0.1]])
    mask = torch.tensor([[True, False], [False, True]])
    emb = Embeddings(query=q, positive=p, document_mask=mask)
    mixing = HardNegativeMixing(num=4, top_k=2, generator=torch.Generator().manual_seed(0))
    plain = InfoNCE(temperature=0.1)(emb).value
    assert plain.item() == 0.0  # one allowed document per query: p = 1
    assert InfoNCE(temperature=0.1, mixing=mixing)(emb).value.item() == pytest.approx(0.0, abs=1e-12)
    qn, docs = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(p, dim=-1)
    out = mixing(qn, docs, (qn @ docs.T).masked_fill(~mask, -INF))
    assert out.shape == (2, 8, 3)
    assert torch.equal(out, torch.zeros_like(out))  # nothing built from p0 / p1


class Recording(HardNegativeMixing):
    """The mixer as InfoNCE calls it, keeping the synthetic block it returned."""

    def __call__(self, q, docs, scores):
        self.block = super().__call__(q, docs, scores)
        return self.block


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_synthetic_negatives_infonce_adds_are_what_mixing_promises(seed):
    # B = 4, K = 2, D = 8 (a random vector is never in a 3-d span by chance). Each positive is its query's most
    # similar document, and n00 (column 4) a near copy of p0, masked off for query 0 (as is p1): both would be
    # among the hardest "negatives" if the mixer did not exclude them.
    q, noise, n = random_batch(4, 2, 8, seed=30 + seed)
    p = q + 0.3 * noise
    n[0, 0] = p[0] + 0.05 * noise[1]
    mask = torch.ones(4, 12, dtype=torch.bool)
    mask[0, 1] = mask[0, 4] = False
    emb = Embeddings(query=q, positive=p, negatives=n, document_mask=mask)
    mixing = Recording(num=4, top_k=2, generator=torch.Generator().manual_seed(seed))
    mixed = InfoNCE(temperature=0.1, mixing=mixing)(emb)
    block = mixing.block  # [B, 8, D]: 4 negatives-kind, then 4 query-kind per query
    torch.testing.assert_close(block.norm(dim=-1), torch.ones(4, 8, dtype=torch.float64))
    qn = torch.nn.functional.normalize(q, dim=-1)
    docs = torch.nn.functional.normalize(emb.documents(), dim=-1)
    scores = (qn @ docs.T).masked_fill(~mask, -INF)
    for i in range(4):
        top = top_valid(scores, i, 2)  # plain Python: neither the positive nor a masked document
        assert i not in top and (i != 0 or not {1, 4} & set(top))
        for h in block[i, :4]:  # a non-negative mix of the two hardest allowed negatives
            residual, x = lstsq_residual([docs[c] for c in top], h)
            assert residual < 1e-9 and x.min().item() >= -1e-9
        for h in block[i, 4:]:  # a non-negative mix of the query and one of them, closer to that negative
            fits = [(c, x) for c in top for residual, x in [lstsq_residual([qn[i], docs[c]], h)] if residual < 1e-9]
            assert fits and all(x.min().item() >= -1e-9 for _, x in fits)
            c = fits[0][0]
            assert torch.dot(h, docs[c]).item() >= torch.dot(h, qn[i]).item() - 1e-12
    # The block enters as extra negatives with logits q·h/τ: the loss is InfoNCE over the pool plus those columns.
    expected = 0.0
    for i in range(4):
        others = [scores[i, j].item() / 0.1 for j in range(12) if j != i and mask[i, j]]
        others += [torch.dot(qn[i], h).item() / 0.1 for h in block[i]]
        expected += nll(scores[i, i].item() / 0.1, others) / 4
    assert mixed.value.item() == pytest.approx(expected, rel=1e-10)
    assert mixed.value.item() > InfoNCE(temperature=0.1)(emb).value.item()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num": 0},
        {"top_k": 0},
        {"kinds": []},
        {"kinds": ["docs"]},
        {"kinds": ["query", "positives"]},
        {"query_cap_margin": -0.1},
    ],
)
def test_mixing_bad_knobs(kwargs):
    with pytest.raises(ConfigError, match="mixing"):
        HardNegativeMixing(**kwargs)


class FixedMixing(HardNegativeMixing):
    """Hands InfoNCE the same synthetic negatives every call: a hand-built case instead of random mixes."""

    def __init__(self, synthetic: torch.Tensor) -> None:
        super().__init__(num=1, top_k=1)
        self.synthetic = synthetic

    def __call__(self, q: torch.Tensor, docs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.synthetic


def test_accuracy_counts_real_documents_and_synthetic_outranking_is_logged_apart():
    # q0 = (1, 0), q1 = (0, 1); p0 = (1, 0.2), p1 = (0.2, 1): each query's positive is its top real document
    # (cos 0.98 vs 0.196). One synthetic negative each, (1, 0): cos 1 > 0.98 for q0 (outranks its positive),
    # cos 0 < 0.98 for q1. Real-document accuracy 1, synthetic outranks the positive for 1 of 2 queries.
    emb = Embeddings(query=t([[1.0, 0.0], [0.0, 1.0]]), positive=t([[1.0, 0.2], [0.2, 1.0]]))
    mixing = FixedMixing(t([[[1.0, 0.0]], [[1.0, 0.0]]]))
    logs = InfoNCE(temperature=0.1, mixing=mixing)(emb).logs
    assert logs["accuracy"] == 1.0
    assert logs["synthetic_outranks_pos"] == 0.5
    # The positive's rank among all columns: 2 for q0 (the synthetic above it), 1 for q1. The best synthetic's rank
    # among the real documents (p0, p1): 1 for q0 (cos 1 above both), 3 for q1 (cos 0 below 0.98 and 0.196).
    assert logs["positive_rank"] == 1.5 and logs["synthetic_rank"] == 2.0
    assert "synthetic_outranks_pos" not in InfoNCE(temperature=0.1)(emb).logs  # only when mixing


def test_synthetic_outranking_with_nothing_to_mix_is_zero():
    # One query, one document: the mixer has no negative to mix and returns no synthetic vector at all.
    emb = Embeddings(query=t([[1.0, 0.0]]), positive=t([[0.0, 1.0]]))
    logs = InfoNCE(temperature=0.1, mixing=HardNegativeMixing(num=2, top_k=2))(emb).logs
    assert logs["synthetic_outranks_pos"] == 0.0 and logs["accuracy"] == 1.0
    assert logs["positive_rank"] == 1.0 and "synthetic_rank" not in logs  # no synthetic to rank


# ------------------------------------------------------------------------------------------------------------------
# Capped query mixes: cos(q, h) ≤ cos(q, p) − margin.
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("c", "bound", "beta"),
    [
        (0.0, 0.6, 3 / 7),  # θ = 90°, cos φ = 0.6, sin φ = 0.8: β* = 0.6 / (0.6 + 0.8); h ∝ (3, 4)/7 → (0.6, 0.8)
        (0.0, 0.5, 1 / (1 + math.sqrt(3))),  # φ = 60°: sin 30° / (sin 30° + sin 60°)
        (0.6, 0.8, 7 / 22),  # sin(θ − φ) = 0.8·0.8 − 0.6·0.6 = 0.28, sin φ = 0.6: 0.28 / 0.88; h ∝ (16, 12)/22
        (0.7, 0.6, 0.0),  # the negative itself is above the bound: no room for q
        (0.7, 0.7, 0.0),
        (0.3, 1.0, 1.0),  # a bound of 1 caps nothing
    ],
)
def test_largest_beta_by_hand(c, bound, beta):
    got = largest_beta(t([c]), t([bound])).item()
    assert got == pytest.approx(beta, abs=1e-12)
    q, n = t([1.0, 0.0]), t([c, math.sqrt(1 - c * c)])  # 2-D: cos(q, n) = c
    h = torch.nn.functional.normalize(got * q + (1 - got) * n, dim=0)
    assert torch.dot(q, h).item() == pytest.approx(max(bound, c) if bound < 1 else 1.0, abs=1e-12)


def capped_case(margin: float | None, num: int = 40, seed: int = 0):
    """One query q = (1, 0), its positive p = (0.6, 0.8) (cos 0.6), one hard negative n = (0, 1) (cos 0): the query
    mixes normalize(β q + (1 − β) n), β ~ U(0, 0.5), with the cap cos(q, h) ≤ 0.6 − margin."""
    q, docs = t([[1.0, 0.0]]), t([[0.6, 0.8], [0.0, 1.0]])
    generator = torch.Generator().manual_seed(seed)
    mixing = HardNegativeMixing(num=num, top_k=1, kinds=["query"], generator=generator, query_cap_margin=margin)
    drawn = 0.5 * torch.rand(1, num, 1, generator=torch.Generator().manual_seed(seed)).double()  # as the mixer draws
    return mixing(q, docs, q @ docs.T), drawn[0, :, 0]


@pytest.mark.parametrize(("margin", "beta_max"), [(0.0, 3 / 7), (0.1, 1 / (1 + math.sqrt(3)))])
def test_capped_query_mixes_stop_at_the_bound(margin, beta_max):
    out, drawn = capped_case(margin)
    cos = out[0, :, 0]  # cos(q, h) = h's first coordinate
    capped = drawn > beta_max
    assert capped.any() and (~capped).any()  # both cases occur in these 40 draws
    beta = torch.minimum(drawn, torch.tensor(beta_max, dtype=torch.float64))
    expected = beta / torch.sqrt(beta**2 + (1 - beta) ** 2)  # cos(q, normalize(β q + (1 − β) n)) with q ⊥ n
    torch.testing.assert_close(cos, expected, rtol=0, atol=1e-12)
    assert cos[capped].sub(0.6 - margin).abs().max().item() < 1e-12  # capped draws land on the bound exactly
    uncapped, _ = capped_case(None)
    assert (uncapped[0, :, 0] > 0.6).any()  # without the cap some mixes pass the positive (β > 3/7)


def outranking_batch():
    """B = 2, K = 1, D = 4: each query's positive at cos 0.6, its own hard negative at cos 0.45, every other
    document orthogonal to it: an uncapped query mix with β ≳ 0.1 passes the positive."""
    q = t([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    p = t([[0.6, 0.0, 0.8, 0.0], [0.0, 0.6, 0.0, 0.8]])
    n = t([[[0.45, 0.0, 0.0, 0.893]], [[0.0, 0.45, 0.893, 0.0]]])
    return Embeddings(query=q, positive=p, negatives=n)


def test_cap_keeps_every_synthetic_below_the_positive():
    emb = outranking_batch()

    def logs(margin):
        generator = torch.Generator().manual_seed(0)
        mixing = HardNegativeMixing(num=16, top_k=1, kinds=["query"], generator=generator, query_cap_margin=margin)
        return InfoNCE(temperature=0.05, mixing=mixing)(emb).logs

    uncapped, capped = logs(None), logs(0.02)
    assert uncapped["synthetic_outranks_pos"] == 1.0 and uncapped["positive_rank"] > 2
    assert capped["synthetic_outranks_pos"] == 0.0 and capped["positive_rank"] == 1.0
    assert capped["synthetic_rank"] >= 2  # below the positive among the real documents too


def test_capped_mixes_of_a_negative_above_the_positive_are_dropped():
    # q = (1, 0, 0), its positive at cos 0.5, its one hard negative at cos 0.7: every mix of that negative lies above
    # the bound, so the capped mixer drops them all (no copies of n either) and the loss is plain InfoNCE's.
    emb = Embeddings(query=t([[1.0, 0.0, 0.0]]), positive=t([[0.5, 0.866, 0.0]]), negatives=t([[[0.7, 0.0, 0.714]]]))

    def loss(margin):
        mixing = HardNegativeMixing(num=8, top_k=1, kinds=["query"], query_cap_margin=margin)
        return InfoNCE(temperature=0.05, mixing=mixing)(emb)

    plain, capped, uncapped = InfoNCE(temperature=0.05)(emb), loss(0.0), loss(None)
    assert capped.value.item() == pytest.approx(plain.value.item(), rel=1e-12)
    assert capped.logs["synthetic_outranks_pos"] == 0.0 and "synthetic_rank" not in capped.logs
    assert uncapped.logs["synthetic_outranks_pos"] == 1.0 and uncapped.value.item() > plain.value.item() + 1


def test_cap_margin_reaches_the_mixer_from_the_config():
    loss = build_loss({"infonce": {"hn_mixing": {"enabled": True, "query_cap_margin": 0.05}}}).terms["infonce"]
    assert loss.mixing.query_cap_margin == 0.05
    assert build_loss({"infonce": {"hn_mixing": {"enabled": True}}}).terms["infonce"].mixing.query_cap_margin is None


class FrozenMixing(HardNegativeMixing):
    """The synthetic block of the first call, returned unchanged after: the negatives are detached by design (no
    gradient through their construction), so finite differences must not see them move."""

    def __call__(self, q, docs, scores):
        if not hasattr(self, "block"):
            self.block = super().__call__(q.detach(), docs.detach(), scores.detach())
        return self.block


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_infonce_with_capped_mixing_gradcheck(gamma):
    q, p, n = random_batch(3, 2, 4, seed=5, grad=True)
    mixing = FrozenMixing(num=3, top_k=2, generator=torch.Generator().manual_seed(0), query_cap_margin=0.05)
    loss = InfoNCE(temperature=0.2, gamma=gamma, mixing=mixing)

    def f(q, p, n):
        return loss(Embeddings(query=q, positive=p, negatives=n)).value

    f(q, p, n)  # builds the block at the unperturbed inputs
    assert mixing.block.shape == (3, 6, 4)
    assert gradcheck(f, (q, p, n))
