"""Online hard-negative mixing: synthetic negatives made from a query's hardest negatives (MoCHi)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embedlab.errors import ConfigError
from embedlab.losses.settings import MIXING_KINDS as KINDS
from embedlab.losses.settings import MixingSettings


class HardNegativeMixing:
    r"""MoCHi (Kalantidis et al., NeurIPS 2020, "Hard Negative Mixing for Contrastive Learning"), used online by
    KaLM-Embedding-V2. For query q_i (unit norm) let n_1..n_N be its N = ``top_k`` most similar negatives in the
    in-batch pool (its own positive and masked documents excluded). Per query it draws ``num`` of each kind:

        negatives:  h = normalize(α n_a + (1 − α) n_b),   α ~ U(0, 1),   a, b uniform in 1..N
        query:      h = normalize(β q_i + (1 − β) n_c),   β ~ U(0, 0.5), c uniform in 1..N

    The synthetic negatives are detached (they shape the softmax, they are not trained toward) and the caller appends
    q_i · h to the query's logits. Input ``scores`` [B, N_pool] holds the pool cosines with −inf where not allowed
    (column i: the query's own positive). A zero vector means "no synthetic negative here", and the caller drops it
    (InfoNCE does): every vector of a query with no allowed negative (nothing to mix), a capped mix with no room.

    Capped query mixes (``query_cap_margin`` = m, null = uncapped as in MoCHi). An uncapped query mix is at least as
    close to q as its negative: with c = cos(q, n) ≥ 0 it reaches cos(q, h) up to √((1 + c)/2) at β = 0.5, above
    most text positives, so the synthetic block outranks the positive. The cap keeps every query mix below the
    positive: cos(q, h) ≤ t = cos(q, p) − m. h = normalize(β q + (1 − β) n) walks the great circle from n (β = 0)
    to q (β = 1) and cos(q, h) rises monotonically with β, so the bound is a largest β. With θ = arccos c and
    φ = arccos t, the point at angle φ from q on that arc is ∝ sin(θ − φ) q + sin(φ) n (slerp), hence

        β* = sin(θ − φ) / (sin(θ − φ) + sin φ)   if c < t < 1;   β* = 0 if t ≤ c;   β* = 1 if t ≥ 1,

    and the drawn β becomes min(β, β*). Where the negative itself is at or above the bound (c ≥ t) every mix of it
    is too, so that synthetic is dropped (a zero vector) rather than kept as a copy of n, which would only add
    weight to a real negative. Negative–negative mixes are not capped: ``synthetic_outranks_pos`` in InfoNCE's log
    shows whether they outrank the positive.
    """

    def __init__(
        self,
        num: int = MixingSettings.num,
        top_k: int = MixingSettings.top_k,
        kinds: tuple[str, ...] | list[str] = KINDS,
        generator: torch.Generator | None = None,
        query_cap_margin: float | None = MixingSettings.query_cap_margin,
    ) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ConfigError(f"hard-negative mixing kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
        if num < 1 or top_k < 1:
            raise ConfigError(f"hard-negative mixing needs num >= 1 and top_k >= 1, got num={num}, top_k={top_k}")
        if query_cap_margin is not None and query_cap_margin < 0:
            raise ConfigError(f"hard-negative mixing query_cap_margin must be >= 0 or null, got {query_cap_margin}")
        self.num, self.top_k, self.kinds, self.generator = num, top_k, tuple(kinds), generator
        self.query_cap_margin = query_cap_margin

    @torch.no_grad()
    def __call__(self, q: torch.Tensor, docs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        b = q.shape[0]
        candidates = scores.clone()
        candidates[torch.arange(b), torch.arange(b)] = float("-inf")  # the positive is not a negative
        k = min(self.top_k, candidates.shape[1] - 1)
        if k < 1:
            return q.new_zeros(b, 0, q.shape[1])
        top_scores, top = candidates.topk(k, dim=1)  # [B, k]
        none_allowed = torch.isinf(top_scores[:, 0])  # [B]: topk would have picked the positive or masked documents
        hard = docs[top]  # [B, k, D]
        # A row with fewer than k allowed negatives has -inf entries: replace them by its hardest valid one.
        fill = torch.isinf(top_scores)
        if fill.any():
            hard = torch.where(fill.unsqueeze(-1), hard[:, :1].expand_as(hard), hard)

        def random_hard() -> torch.Tensor:  # [B, num, D]: uniform picks among each query's top-k negatives
            i = torch.randint(k, (b, self.num), device=q.device, generator=self.generator)
            return hard.gather(1, i.unsqueeze(-1).expand(-1, -1, hard.shape[-1]))

        def uniform(high: float) -> torch.Tensor:
            return high * torch.rand(b, self.num, 1, device=q.device, generator=self.generator)

        out, keep = [], []  # [B, num, D] blocks; [B, num] whether each synthetic stays
        if "negatives" in self.kinds:
            alpha = uniform(1.0)
            out.append(alpha * random_hard() + (1 - alpha) * random_hard())
            keep.append(~none_allowed[:, None].expand(b, self.num))
        if "query" in self.kinds:
            beta, n = uniform(0.5), random_hard()
            room = ~none_allowed[:, None].expand(b, self.num)
            if self.query_cap_margin is not None:
                bound = scores[torch.arange(b), torch.arange(b)][:, None] - self.query_cap_margin  # cos(q, p) − m
                cos_qn = torch.einsum("bd,bsd->bs", q, n)
                beta = torch.minimum(beta, largest_beta(cos_qn, bound).unsqueeze(-1))
                room = room & (cos_qn < bound)  # a negative at or above the bound leaves no room for a mix
            out.append(beta * q.unsqueeze(1) + (1 - beta) * n)
            keep.append(room)
        out = F.normalize(torch.cat(out, dim=1), dim=-1)
        return (out * torch.cat(keep, dim=1).unsqueeze(-1)).detach()


def largest_beta(cos_qn: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """The largest β with cos(q, normalize(β q + (1 − β) n)) ≤ bound, from c = cos(q, n) (unit q, n; broadcast):
    sin(θ − φ) / (sin(θ − φ) + sin φ), θ = arccos c, φ = arccos bound (HardNegativeMixing's docstring)."""
    theta = cos_qn.clamp(-1.0, 1.0).arccos()
    phi = bound.clamp(-1.0, 1.0).arccos().expand_as(theta)
    ahead = (theta - phi).clamp(min=0.0).sin()  # 0 where the negative itself is at or above the bound
    denominator = ahead + phi.sin()
    beta = ahead / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(bound >= 1.0, torch.ones_like(beta), beta)  # no bound below cos = 1: nothing to cap
