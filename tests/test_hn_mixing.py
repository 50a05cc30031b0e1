"""Online hard-negative mixing (MoCHi, KaLM-V2): geometry of the synthetic negatives, masking, seeding, knobs."""

from __future__ import annotations

import pytest
import torch
from tensors import random_batch, t
from test_losses_contrastive import nll

from embedlab.errors import ConfigError
from embedlab.losses import Embeddings, HardNegativeMixing, InfoNCE

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
    "kwargs", [{"num": 0}, {"top_k": 0}, {"kinds": []}, {"kinds": ["docs"]}, {"kinds": ["query", "positives"]}]
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
    assert "synthetic_outranks_pos" not in InfoNCE(temperature=0.1)(emb).logs  # only when mixing


def test_synthetic_outranking_with_nothing_to_mix_is_zero():
    # One query, one document: the mixer has no negative to mix and returns no synthetic vector at all.
    emb = Embeddings(query=t([[1.0, 0.0]]), positive=t([[0.0, 1.0]]))
    logs = InfoNCE(temperature=0.1, mixing=HardNegativeMixing(num=2, top_k=2))(emb).logs
    assert logs["synthetic_outranks_pos"] == 0.0 and logs["accuracy"] == 1.0
