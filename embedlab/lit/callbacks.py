"""Lightning callbacks: evaluation of the student on dev tasks during and after training."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytorch_lightning as pl

from embedlab.data import get_task
from embedlab.eval.cache import EmbeddingCache, cache_for_ranks
from embedlab.eval.runner import EvalSettings, TaskResult, evaluate_tasks
from embedlab.lit.distributed import evaluates_on_this_rank, evaluation_ranks

log = logging.getLogger(__name__)


class EvaluationCallback(pl.Callback):
    """Evaluate the student every `every_n_steps` optimizer steps and at the end; log `eval/<task>/<metric>`.

    With `document_encoder` (e.g. the teacher) retrieval runs asymmetrically: its documents, the student's queries.
    The frozen document side hits the embedding cache after the first evaluation; the student, changed by every
    step, bypasses the cache at every evaluation, the final one included (as re-mining does). With `out_dir`, every
    evaluation rewrites its files there (metrics.json, per_query/<task>.jsonl, runs/<task>.trec), so the last stays.
    Under DDP with a `scratch` folder every rank evaluates: each encodes its shards of every collection
    (`cache_for_ranks`; the student's in `scratch`, removed after each evaluation) and rank 0 searches; without one,
    rank 0 alone evaluates. Under a sharded strategy (FSDP) every forward pass is collective, so every rank encodes
    everything, without the embedding cache (one rank's hit and another's miss would leave the others waiting).
    Only rank 0 writes and logs.
    """

    def __init__(
        self,
        tasks: list[str],
        *,
        every_n_steps: int = 0,
        settings: EvalSettings | None = None,
        data_root: str | None = None,
        document_encoder=None,
        cache: EmbeddingCache | None = None,
        prefix: str = "eval",
        out_dir: Path | None = None,
        scratch: Path | None = None,
    ) -> None:
        self.tasks, self.every_n_steps, self.settings = list(tasks), every_n_steps, settings or EvalSettings()
        self.data_root, self.document_encoder, self.cache, self.prefix = data_root, document_encoder, cache, prefix
        self.out_dir, self.scratch = out_dir, scratch  # scratch: shared by the ranks (e.g. in the run directory)
        self.last: list[TaskResult] = []
        self._last_step = -1

    def evaluate(self, trainer: pl.Trainer, module: pl.LightningModule) -> list[TaskResult]:
        student = module.student
        docs = self.document_encoder or student
        query = student if self.document_encoder is not None else None
        writes = trainer.is_global_zero
        cache = None
        if evaluation_ranks(trainer.strategy) == "rank0":
            cache = self.cache.bypassing(student) if self.cache is not None else None
            if self.scratch is not None:  # every rank is here
                cache = cache_for_ranks(cache, self.scratch, self.settings.shard_rows)
        self.last = evaluate_tasks(
            self.tasks,
            docs,
            query,
            settings=self.settings,
            data_root=self.data_root,
            cache=cache,
            out_dir=self.out_dir if writes else None,
        )
        if cache is not None and cache.across_ranks:  # the trained student's vectors are read: drop them
            trainer.strategy.barrier("evaluated")
            if writes:
                shutil.rmtree(self.scratch, ignore_errors=True)
        student.train()
        metrics = {f"{self.prefix}/{r.task}/{k}": v for r in self.last for k, v in r.metrics.items()}
        for logger in trainer.loggers if writes else []:
            logger.log_metrics(metrics, step=trainer.global_step)
        main = {r.task: round(r.metrics.get(get_task(r.task).main_metric, float("nan")), 4) for r in self.last}
        if writes:
            log.info("%s at step %d: %s", self.prefix, trainer.global_step, main)
        self._last_step = trainer.global_step
        return self.last

    def evaluates_here(self, trainer: pl.Trainer) -> bool:
        """Every rank shares an evaluation through `scratch`, or must run all of it (FSDP); else rank 0 alone (the
        others wait at the next all-reduce)."""
        return self.scratch is not None or evaluates_on_this_rank(trainer.strategy, trainer.global_rank)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self.evaluates_here(trainer):
            return
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        # not already evaluated (and written) at this very step
        if self.evaluates_here(trainer) and trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        # A fit with no step runs none of the train hooks (Lightning skips its loop): the start is the trained student.
        if trainer.global_step == 0 and self._last_step == -1:
            self.on_train_end(trainer, pl_module)
