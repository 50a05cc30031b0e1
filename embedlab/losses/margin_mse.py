"""MarginMSE: match the student's positive–negative score margins to a teacher's."""

from __future__ import annotations

from embedlab.errors import ConfigError
from embedlab.losses.base import Embeddings, Loss, LossOutput


class MarginMSE(Loss):
    r"""Margin-MSE (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with Cross-Architecture
    Knowledge Distillation").

    Inputs: ``query`` [B, D], ``candidates`` [B, C, D] with candidate 0 the positive and 1..C−1 negatives,
    ``teacher_scores`` [B, C]. Student scores are dot products s_ic = q_i · c_ic (cosines when the encoder
    normalises):

        L = (1 / (B (C−1))) Σ_i Σ_{c≥1} ((s_i0 − s_ic) − (t_i0 − t_ic))²
    """

    requires = frozenset({"query", "candidates", "teacher_scores"})

    def forward(self, emb: Embeddings) -> LossOutput:
        self.check_inputs(emb)
        student = (emb.query.unsqueeze(1) * emb.candidates).sum(-1)  # [B, C]
        teacher = emb.teacher_scores.to(student.dtype)
        if teacher.shape != student.shape or student.shape[1] < 2:
            raise ConfigError(
                f"margin_mse needs [B, C>=2] scores; got student {tuple(student.shape)}, teacher {tuple(teacher.shape)}"
            )
        margin_s = student[:, :1] - student[:, 1:]
        margin_t = teacher[:, :1] - teacher[:, 1:]
        loss = (margin_s - margin_t).pow(2).mean()
        return LossOutput(loss, {"student_margin": margin_s.mean().item(), "teacher_margin": margin_t.mean().item()})
