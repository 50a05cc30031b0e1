"""EmbeddingModule: a student encoder trained by a weighted set of losses, optionally against a teacher.

The step is: batch → `embed` (the student's forward passes, teacher targets) → `Embeddings` → [gather across
devices] → loss → logs → `backward`. The step strategies live here, once, for every loss: GradCache (`chunk_size`
and/or `chunk_tokens`, see `gradcache.py`) replaces the student's forward passes in `embed` and the backward pass;
cross-device negatives (`gather`, see `gather.py`) widen the record to the global batch; `compile` (see `compiled.py`)
compiles the student's backbone in place. Losses never see a model.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from embedlab.data.batch import KINDS
from embedlab.errors import ConfigError
from embedlab.lit.compiled import compile_backbone
from embedlab.lit.gather import gather_embeddings, world
from embedlab.lit.gradcache import GradCache
from embedlab.lit.numerics import NonFiniteGuard
from embedlab.lit.optim import OptimConfig, configure_adamw
from embedlab.lit.teacher import TeacherTable, check_teacher_size, teacher_targets
from embedlab.losses import Embeddings, Loss
from embedlab.models import Encoder


class EmbeddingModule(pl.LightningModule):
    def __init__(
        self,
        student: Encoder,
        loss: Loss,
        optim: OptimConfig | None = None,
        *,
        teacher: Encoder | None = None,
        teacher_table: TeacherTable | None = None,
        chunk_size: int | None = None,
        chunk_tokens: int | None = None,
        gather: bool = True,
        nonfinite: str = "stop",
        compile: bool = False,
    ) -> None:
        super().__init__()
        if compile:
            compile_backbone(student.backbone)
        self.student, self.loss = student, loss
        self.grad_cache = GradCache(chunk_size, chunk_tokens) if chunk_size or chunk_tokens else None
        self.gather = gather
        self.nonfinite = NonFiniteGuard(nonfinite)
        self.optim = optim or OptimConfig()
        loss.check_dim(student.dim)
        self.teacher_table = teacher_table
        self.teacher = teacher
        if teacher is not None:  # frozen: kept out of the optimizer, the checkpoint's trainable state and autograd
            teacher.requires_grad_(False).eval()
        if "teacher" in loss.requires:
            if teacher is None and teacher_table is None:
                raise ConfigError("the loss needs teacher embeddings (leaf): configure teacher=... or teacher.file=...")
            check_teacher_size(student.dim, teacher_table.dim if teacher_table is not None else teacher.dim)

    def use_teacher_table(self, table: TeacherTable) -> None:
        """Look the teacher's targets up in `table` (built at fit's setup, once the ranks can share the teacher's
        pass): the teacher model leaves the module."""
        check_teacher_size(self.student.dim, table.dim)
        self.teacher_table, self.teacher = table, None

    def on_fit_start(self) -> None:
        """HF backbones load in eval mode and Lightning keeps the modes it finds: train the student with its
        dropout whether or not an evaluation (which leaves it in train mode) ran first; the teacher stays frozen."""
        self.student.train()
        if self.teacher is not None:
            self.teacher.eval()

    # ------------------------------------------------------------------------------------------- the step
    def embed(self, batch: dict) -> Embeddings:
        """Run the student over the batch's texts and gather targets into an `Embeddings` record."""
        vectors = self.encode_groups({k: batch[k] for k in KINDS[batch["kind"]].groups})
        query = vectors["query"]
        b = query.shape[0]
        emb = Embeddings(query=query)
        if "documents" in batch:
            docs = vectors["documents"]
            k = int(batch["num_negatives"])
            emb.positive = docs[:b]
            emb.negatives = docs[b:].view(b, k, -1) if k else None
            emb.document_mask = batch.get("document_mask")
        if "candidates" in batch:
            emb.candidates = vectors["candidates"].view(b, int(batch["num_candidates"]), -1)
            emb.teacher_scores = batch["teacher_scores"]
            if "positive" in self.loss.requires:  # InfoNCE beside KL on a scored list: candidate 0 is the positive
                emb.positive, emb.negatives = emb.candidates[:, 0], emb.candidates[:, 1:]
                emb.document_mask = batch.get("document_mask")
        # In a mixture (batches carry "dataset") the teacher's targets are for the distillation texts only.
        if "teacher" in self.loss.requires and ("dataset" not in batch or batch["kind"] == "text"):
            emb.teacher = self._teacher_targets(batch).to(query.device)
        return emb

    def encode_groups(self, groups: dict[str, dict]) -> dict[str, torch.Tensor]:
        """Student embeddings of each group of tokenized texts: GradCache's chunked, cached pass when training with
        `chunk_size` or `chunk_tokens`, else plain forward passes."""
        if self.grad_cache is not None and self.training and torch.is_grad_enabled():
            return self.grad_cache.embed(self.student, groups)
        return {name: self.student(**inputs) for name, inputs in groups.items()}

    def _teacher_targets(self, batch: dict) -> torch.Tensor:
        if self.teacher_table is not None:
            return self.teacher_table.lookup(batch["index"])
        assert self.teacher is not None  # the same rule as the cached table's (teacher_targets)
        return torch.from_numpy(teacher_targets(self.teacher, batch["texts"], batch_size=len(batch["texts"])))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        emb = self.embed(batch)
        devices = world()[1] if self.gather else 1
        if devices > 1:
            emb = gather_embeddings(emb, batch)
        # Losses run in float32 outside autocast: bf16 similarities at temperature 0.05 would be off by ~0.1 logit.
        with torch.autocast(self.device.type, enabled=False):
            out = self.loss(emb.float32())
        if not self.nonfinite.check(out, emb, step=self.global_step, batch=batch_idx):
            return None  # Lightning then skips this batch's backward pass and optimizer step
        size = batch["query"]["input_ids"].shape[0]
        self.log("train/loss", out.value, prog_bar=True, batch_size=size)
        for key, value in out.logs.items():
            self.log(f"train/{key}", value, batch_size=size)
        # Every device computes the same global loss; DDP averages gradients, so scale by the number of devices to
        # get the full-batch gradient (see gather.py).
        return out.value * devices

    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        """Lightning's backward hook: GradCache's two-phase backward when the step was embedded through it."""
        if self.grad_cache is not None and self.grad_cache.pending:
            self.grad_cache.backward(loss, self.student, list(self.parameters()))
        else:
            super().backward(loss, *args, **kwargs)

    def on_before_optimizer_step(self, optimizer) -> None:
        """A finite loss can still have a non-finite gradient: stop or drop the step before the optimizer applies it.
        Under fp16's GradScaler, overflowing gradients are the scaler's to skip (see numerics.py)."""
        if getattr(self.trainer.precision_plugin, "scaler", None) is None:
            self.nonfinite.check_gradients(self.named_parameters(), step=self.global_step)

    # ------------------------------------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        return configure_adamw(self.student, self.optim, self.trainer)

    def state_dict(self, *args, **kwargs):
        """Checkpoints hold the student only: the frozen teacher is rebuilt from its config, not copied."""
        state = super().state_dict(*args, **kwargs)
        return {k: v for k, v in state.items() if not k.startswith("teacher.")}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        missing_ok = {k for k in super().state_dict() if k.startswith("teacher.")}
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            bad = [k for k in result.missing_keys if k not in missing_ok] + list(result.unexpected_keys)
            if bad:
                raise RuntimeError(f"checkpoint does not match the model: {bad[:5]}")
        return result
