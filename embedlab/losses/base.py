"""What every loss consumes and returns. Losses are pure functions of embeddings/scores: they never run a model.

A training step (the Lightning module, through its step strategy) turns a batch into an `Embeddings` record; each
loss reads the fields it declares in `requires` and returns a `LossOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import torch

from embedlab.errors import ConfigError
from embedlab.losses.settings import LossSettings

EMBEDDING_FIELDS = ("query", "positive", "negatives", "candidates")


@dataclass
class Embeddings:
    """One batch as vectors and scores. Shapes: B queries/texts, K hard negatives, C scored candidates, D dims."""

    query: torch.Tensor | None = None  # [B, D] queries, or the texts themselves for text-only distillation
    positive: torch.Tensor | None = None  # [B, D] one positive document per query
    negatives: torch.Tensor | None = None  # [B, K, D] hard negatives per query
    candidates: torch.Tensor | None = None  # [B, C, D] a scored list per query (candidate 0 = the positive)
    teacher: torch.Tensor | None = None  # [B, Dt] teacher embeddings of the same texts as `query` (LEAF)
    teacher_scores: torch.Tensor | None = None  # [B, C] teacher scores of `candidates`
    # [B, B*(1+K)] False where an in-batch document is the same document as the query's positive (same id), so it
    # must not count as a negative. Columns follow `documents()`: B positives, then B*K negatives row-major.
    document_mask: torch.Tensor | None = None

    def documents(self) -> torch.Tensor:
        """Positives followed by every hard negative of the batch: [B*(1+K), D] (the in-batch document pool)."""
        assert self.positive is not None
        if self.negatives is None:
            return self.positive
        return torch.cat([self.positive, self.negatives.reshape(-1, self.negatives.shape[-1])])

    def truncated(self, dim: int) -> Embeddings:
        """First `dim` coordinates of every student embedding (Matryoshka); teacher fields are truncated too when
        they live in the same space (same size), since a LEAF student inherits the teacher's nested dims."""
        student_dim = next(getattr(self, f).shape[-1] for f in EMBEDDING_FIELDS if getattr(self, f) is not None)
        changes = {f: getattr(self, f)[..., :dim] for f in EMBEDDING_FIELDS if getattr(self, f) is not None}
        if self.teacher is not None and self.teacher.shape[-1] == student_dim:
            changes["teacher"] = self.teacher[..., :dim]
        return replace(self, **changes)

    def float32(self) -> Embeddings:
        """Every floating-point field in float32 (mixed-precision forward passes hand over bf16/fp16 vectors)."""
        changes = {
            f.name: value.float()
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor) and value.is_floating_point()
        }
        return replace(self, **changes)

    def present(self) -> set[str]:
        return {f.name for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class LossOutput:
    value: torch.Tensor  # scalar to backpropagate
    logs: dict[str, float] = field(default_factory=dict)  # extra figures worth plotting (accuracy, margins, ...)


class Loss(torch.nn.Module):
    """Base class: subclasses set `requires` and `settings` (losses/settings.py) and implement `forward`."""

    requires: ClassVar[frozenset[str]] = frozenset()
    settings: ClassVar[type[LossSettings]] = LossSettings  # its config entry's schema: knobs, defaults, types

    def check_inputs(self, emb: Embeddings) -> None:
        missing = self.requires - emb.present()
        if missing:
            raise ConfigError(
                f"loss '{type(self).__name__}' needs {sorted(missing)} but the batch has only {sorted(emb.present())}; "
                "check that the data set and the loss fit together (e.g. leaf needs a teacher)"
            )

    def check_dim(self, dim: int) -> None:
        """Called once with the student's embedding size, before training; wrappers override."""


def positive_temperature(value: float, name: str = "temperature") -> float:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return float(value)


SIMILARITIES = ("cosine", "dot")


def check_similarity(name: str) -> str:
    """The `similarity` knob of the score-based losses (InfoNCE, focal InfoNCE, KL, MarginMSE)."""
    if name not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {', '.join(SIMILARITIES)}, got {name!r}")
    return name


def scoring_vectors(x: torch.Tensor, similarity: str) -> torch.Tensor:
    """The rows whose dot products are the scores: unit rows for cosine, raw rows for dot. Normalising here, inside
    the loss, is what renormalises each Matryoshka prefix under cosine (see matryoshka.py)."""
    return torch.nn.functional.normalize(x, dim=-1) if similarity == "cosine" else x


def score_matrix(a: torch.Tensor, b: torch.Tensor, similarity: str) -> torch.Tensor:
    """Scores [..., N, M] between rows of a [..., N, D] and b [..., M, D]: cosines, or raw dot products."""
    return scoring_vectors(a, similarity) @ scoring_vectors(b, similarity).transpose(-1, -2)
