"""A weighted sum of named losses: what the `loss` config group builds."""

from __future__ import annotations

from torch import nn

from embedlab.errors import ConfigError
from embedlab.losses.base import Embeddings, Loss, LossOutput


class WeightedSum(Loss):
    """L = Σ_k w_k L_k. Every component is logged on its own (`<name>`, `<name>/<figure>`), as is the total.

    `partial` (a mixture of kinds of data): a term runs only on the batches that hold its inputs — LEAF on the texts
    batches, InfoNCE on the pairs batches — and a batch that feeds no term is an error."""

    def __init__(self, terms: dict[str, tuple[float, Loss]], partial: bool = False) -> None:
        super().__init__()
        self.partial = partial
        self.weights = {name: float(weight) for name, (weight, _) in terms.items()}
        self.terms = nn.ModuleDict({name: loss for name, (_, loss) in terms.items()})
        self.requires = frozenset().union(*(loss.requires for loss in self.terms.values()))

    def check_dim(self, dim: int) -> None:
        for loss in self.terms.values():
            loss.check_dim(dim)

    def forward(self, emb: Embeddings) -> LossOutput:
        total, logs = None, {}
        present = emb.present()
        for name, loss in self.terms.items():
            if self.partial and not loss.requires <= present:
                continue
            out = loss(emb)
            part = self.weights[name] * out.value
            total = part if total is None else total + part
            logs[name] = out.value.item()
            logs.update({f"{name}/{key}": value for key, value in out.logs.items()})
        if total is None:
            raise ConfigError(f"no loss term applies to a batch with {sorted(present)}: {list(self.terms)}")
        return LossOutput(total, logs)
