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
    q_i · h to the query's logits. Input ``scores`` [B, N_pool] holds the pool cosines with −inf where not allowed.
    A query with no allowed negative at all has nothing to mix: its synthetic vectors are zero, and the caller
    drops them (InfoNCE does).
    """

    def __init__(
        self,
        num: int = MixingSettings.num,
        top_k: int = MixingSettings.top_k,
        kinds: tuple[str, ...] | list[str] = KINDS,
        generator: torch.Generator | None = None,
    ) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ConfigError(f"hard-negative mixing kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
        if num < 1 or top_k < 1:
            raise ConfigError(f"hard-negative mixing needs num >= 1 and top_k >= 1, got num={num}, top_k={top_k}")
        self.num, self.top_k, self.kinds, self.generator = num, top_k, tuple(kinds), generator

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

        out = []
        if "negatives" in self.kinds:
            alpha = uniform(1.0)
            out.append(alpha * random_hard() + (1 - alpha) * random_hard())
        if "query" in self.kinds:
            beta = uniform(0.5)
            out.append(beta * q.unsqueeze(1) + (1 - beta) * random_hard())
        out = F.normalize(torch.cat(out, dim=1), dim=-1)
        return out.masked_fill(none_allowed[:, None, None], 0.0).detach()
