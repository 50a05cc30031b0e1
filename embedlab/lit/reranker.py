"""A cross-encoder reranker distilled from soft labels (for when no reranker is at hand, as offline here).

The reranker reads "query [SEP] candidate" and emits one logit; over a query's list its logits are trained towards
the teacher's distribution with the listwise KL of `kl_distill`:

    L = (1/B) Σ_i KL( softmax(t_i / τ_t) ‖ softmax(r_i / τ_s) ),   r_ic = reranker(q_i, c_ic)

(RocketQAv2-style listwise distillation, Ren et al. 2021, with the reranker as the student). Starting from a
bi-encoder's backbone (all-MiniLM-L6-v2) with a fresh one-logit head, it learns to rerank like the teacher while
reading query and candidate jointly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch

from embedlab.data.training import ScoredExample
from embedlab.lit.optim import OptimConfig, configure_adamw
from embedlab.losses.kl_distill import list_kl


class PairCollator:
    """Scored lists → tokenised (query, candidate) pairs [B·C] and teacher scores [B, C]."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, examples: Sequence[ScoredExample]) -> dict:
        c = len(examples[0].candidates)
        queries = [e.query for e in examples for _ in range(c)]
        docs = [d for e in examples for d in e.candidates]
        pairs = self.tokenizer(
            queries, docs, padding=True, truncation="longest_first", max_length=self.max_length, return_tensors="pt"
        )
        scores = torch.tensor([list(e.scores) for e in examples], dtype=torch.float32)
        return {"pairs": dict(pairs), "teacher_scores": scores, "num_candidates": c}


class RerankerModule(pl.LightningModule):
    def __init__(
        self,
        model: torch.nn.Module,
        optim: OptimConfig,
        *,
        student_temperature: float = 1.0,
        teacher_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.model, self.optim = model, optim
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature

    def list_logits(self, batch: dict) -> torch.Tensor:
        b = batch["teacher_scores"].shape[0]
        return self.model(**batch["pairs"]).logits[:, 0].float().view(b, batch["num_candidates"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.list_logits(batch)  # under autocast when the trainer asks for mixed precision
        with torch.autocast(self.device.type, enabled=False):  # the loss in float32, as for the encoders
            out = list_kl(logits / self.student_temperature, batch["teacher_scores"], self.teacher_temperature)
        size = batch["teacher_scores"].shape[0]
        self.log("train/loss", out.value, prog_bar=True, batch_size=size)
        self.log("train/top1_agreement", out.logs["top1_agreement"], batch_size=size)
        return out.value

    def configure_optimizers(self):
        return configure_adamw(self.model, self.optim, self.trainer)
