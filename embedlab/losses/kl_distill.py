"""Soft-label distillation: match the student's score distribution over a query's candidates to a teacher's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embedlab.errors import ConfigError
from embedlab.losses.base import Embeddings, Loss, LossOutput, check_similarity, positive_temperature, score_matrix
from embedlab.losses.settings import KLDistillSettings


class KLDistill(Loss):
    r"""KL(teacher ‖ student) over each query's candidate list (Hinton et al. 2015; RocketQAv2, Ren et al. 2021;
    the soft labels of LG-ANNA from retriever/reranker scores).

    Inputs: ``query`` [B, D], ``candidates`` [B, C, D], ``teacher_scores`` [B, C]. With student scores
    s_ic = sim(q_i, c_ic) / τ_s (``similarity`` cosine, the default, or dot) and teacher scores t_ic / τ_t:

        L = (1/B) Σ_i Σ_c P^t_ic (log P^t_ic − log P^s_ic),   P^t_i = softmax(t_i / τ_t),  P^s_i = softmax(s_i)
    """

    requires = frozenset({"query", "candidates", "teacher_scores"})
    settings = KLDistillSettings

    def __init__(
        self,
        student_temperature: float = KLDistillSettings.student_temperature,
        teacher_temperature: float = KLDistillSettings.teacher_temperature,
        similarity: str = KLDistillSettings.similarity,
    ) -> None:
        super().__init__()
        self.similarity = check_similarity(similarity)
        self.student_temperature = positive_temperature(student_temperature, "student_temperature")
        self.teacher_temperature = positive_temperature(teacher_temperature, "teacher_temperature")

    def forward(self, emb: Embeddings) -> LossOutput:
        self.check_inputs(emb)
        scores = score_matrix(emb.query.unsqueeze(1), emb.candidates, self.similarity).squeeze(1)
        student = scores / self.student_temperature
        return list_kl(student, emb.teacher_scores, self.teacher_temperature)


def list_kl(student_logits: torch.Tensor, teacher_scores: torch.Tensor, teacher_temperature: float) -> LossOutput:
    """KL(softmax(t / τ_t) ‖ softmax(s)) averaged over lists, [B, C] each: `KLDistill` with the student's scores
    already divided by its temperature (cosines or dot products, or a reranker's logits)."""
    teacher = teacher_scores.to(student_logits.dtype)
    if teacher.shape != student_logits.shape:
        raise ConfigError(f"kl_distill: teacher_scores {tuple(teacher.shape)} vs student {tuple(student_logits.shape)}")
    log_p_teacher = (teacher / teacher_temperature).log_softmax(dim=-1)
    loss = F.kl_div(student_logits.log_softmax(dim=-1), log_p_teacher, log_target=True, reduction="batchmean")
    agree = (student_logits.argmax(-1) == teacher.argmax(-1)).float().mean().item()
    return LossOutput(loss, {"top1_agreement": agree})
