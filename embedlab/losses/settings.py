"""The `loss` group's settings: one dataclass per loss, each knob's default and its one-line comment written once.

They are the typed schemas of conf/loss/*.yaml (registered by embedlab/config/schema.py, so a wrong type or an
unknown key fails when the config is composed), the loss classes take their defaults from them, and `build_loss`
checks a plain mapping against them the same way. What a type cannot state (a temperature > 0, a similarity's
name) each loss checks when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

MIXING_KINDS = ("negatives", "query")  # the synthetic negatives hard-negative mixing can make


@dataclass
class LossSettings:
    """What every loss entry carries besides its own arguments (combine.py, matryoshka.py)."""

    weight: float = 1.0  # weight in the sum of losses
    matryoshka_dims: list[int] | None = None  # e.g. [64, 128, 384]: apply the loss at each nested prefix size too
    matryoshka_weights: list[float] | None = None  # one weight per dim; null = all 1

    def arguments(self) -> dict[str, Any]:
        """The loss class's own arguments: every field but the common ones."""
        common = {f.name for f in fields(LossSettings)}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in common}


@dataclass
class MixingSettings:
    """Online hard-negative mixing (hn_mixing.py): synthetic negatives from each query's hardest ones."""

    enabled: bool = False  # online hard-negative mixing (MoCHi, KaLM-V2)
    num: int = 16  # synthetic negatives per kind and query
    top_k: int = 16  # mix among the query's top-k hardest negatives
    # negatives: α n_a + (1−α) n_b; query: β q + (1−β) n, β ≤ 0.5 (one or both)
    kinds: list[str] = field(default_factory=lambda: list(MIXING_KINDS))
    query_cap_margin: float | None = None  # query mixes: cap β so cos(q, h) ≤ cos(q, p) − this; null = uncapped


@dataclass
class InfoNCESettings(LossSettings):
    """loss=infonce (and focal_infonce, its preset with gamma 1): infonce.py."""

    temperature: float = 0.05  # softmax temperature over the similarities
    similarity: str = "cosine"  # student scores: cosine (each Matryoshka prefix renormalised) | dot (raw dot products)
    gamma: float = 0.0  # focal exponent γ: each example weighted by (1 − p_pos)^γ; 0 = plain InfoNCE
    symmetric: bool = False  # also the document→query direction
    query_query: bool = False  # other queries as extra negatives (GTE)
    doc_doc: bool = False  # other positives as extra negatives (GTE)
    hn_mixing: MixingSettings = field(default_factory=MixingSettings)  # synthetic hard negatives (cosine only)


@dataclass
class KLDistillSettings(LossSettings):
    """loss=kl_distill: kl_distill.py."""

    student_temperature: float = 0.05  # temperature on the student's scores
    teacher_temperature: float = 1.0  # temperature on the teacher's scores
    similarity: str = "cosine"  # student scores: cosine (each Matryoshka prefix renormalised) | dot (raw dot products)


@dataclass
class LeafSettings(LossSettings):
    """loss=leaf: leaf.py."""

    normalize: bool = False  # unit-normalise both first (= 2 − 2 cos)


@dataclass
class MarginMSESettings(LossSettings):
    """loss=margin_mse: margin_mse.py."""

    similarity: str = "cosine"  # student scores: cosine (each Matryoshka prefix renormalised) | dot (raw dot products)
