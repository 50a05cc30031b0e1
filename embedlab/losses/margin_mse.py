"""MarginMSE: match the student's positive–negative score margins to a teacher's."""

from __future__ import annotations

from embedlab.errors import ConfigError
from embedlab.losses.base import Embeddings, Loss, LossOutput, check_similarity, score_matrix
from embedlab.losses.settings import MarginMSESettings


class MarginMSE(Loss):
    r"""Margin-MSE (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with Cross-Architecture
    Knowledge Distillation").

    Inputs: ``query`` [B, D], ``candidates`` [B, C, D] with candidate 0 the positive and 1..C−1 negatives,
    ``teacher_scores`` [B, C]. Student scores s_ic = sim(q_i, c_ic), ``similarity`` cosine (the default, as in
    InfoNCE and KL) or dot (the paper's dot-product students):

        L = (1 / (B (C−1))) Σ_i Σ_{c≥1} ((s_i0 − s_ic) − (t_i0 − t_ic))²
    """

    requires = frozenset({"query", "candidates", "teacher_scores"})
    settings = MarginMSESettings

    def __init__(self, similarity: str = MarginMSESettings.similarity) -> None:
        super().__init__()
        self.similarity = check_similarity(similarity)

    def forward(self, emb: Embeddings) -> LossOutput:
        self.check_inputs(emb)
        student = score_matrix(emb.query.unsqueeze(1), emb.candidates, self.similarity).squeeze(1)  # [B, C]
        teacher = emb.teacher_scores.to(student.dtype)
        if teacher.shape != student.shape or student.shape[1] < 2:
            raise ConfigError(
                f"margin_mse needs [B, C>=2] scores; got student {tuple(student.shape)}, teacher {tuple(teacher.shape)}"
            )
        margin_s = student[:, :1] - student[:, 1:]
        margin_t = teacher[:, :1] - teacher[:, 1:]
        loss = (margin_s - margin_t).pow(2).mean()
        return LossOutput(loss, {"student_margin": margin_s.mean().item(), "teacher_margin": margin_t.mean().item()})
