"""LEAF: regress the (projected) student embedding onto the teacher's embedding of the same text."""

from __future__ import annotations

import torch.nn.functional as F

from embedlab.losses.base import Embeddings, Loss, LossOutput
from embedlab.losses.settings import LeafSettings


class Leaf(Loss):
    r"""Teacher-aligned distillation (Vujanić & Rueckstiess 2025, "LEAF: Knowledge Distillation of Text Embedding
    Models with Teacher-Aligned Representations").

    Inputs: ``query`` [B, Dt] — the student's embeddings of B texts, already projected to the teacher's size —
    and ``teacher`` [B, Dt], the teacher's embeddings of the same texts. No labels, no negatives.

        L = (1/B) Σ_i ‖s_i − t_i‖²

    With ``normalize`` both are unit-normalised first, so L = (1/B) Σ_i (2 − 2 cos(s_i, t_i)): only directions are
    matched, which is all cosine retrieval uses. Logged: the mean student–teacher cosine.
    """

    requires = frozenset({"query", "teacher"})
    settings = LeafSettings

    def __init__(self, normalize: bool = LeafSettings.normalize) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, emb: Embeddings) -> LossOutput:
        self.check_inputs(emb)
        s, t = emb.query, emb.teacher.to(emb.query.dtype)  # equal sizes: `check_teacher_size` (lit/teacher.py)
        if self.normalize:
            s, t = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
        loss = (s - t).pow(2).sum(dim=-1).mean()
        cosine = F.cosine_similarity(s.detach(), t, dim=-1).mean().item()
        return LossOutput(loss, {"cosine_to_teacher": cosine})
