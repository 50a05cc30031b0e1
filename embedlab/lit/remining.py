"""Hard negatives refreshed during training (ANCE, Xiong et al., 2021): every N optimizer steps the current
student re-encodes the corpus and every training pair gets new negatives chosen by the same selection rules."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import MutableSequence
from pathlib import Path

import pytorch_lightning as pl

from embedlab.data.beir import RetrievalData
from embedlab.data.training import PairExample
from embedlab.mining.mine import mine
from embedlab.mining.select import SelectionConfig
from embedlab.report.mining import write_mining_outputs

log = logging.getLogger(__name__)


def refresh_negatives(
    examples: MutableSequence, records: list[dict], corpus: dict[str, str], num_negatives: int
) -> int:
    """Give each pair the first `num_negatives` of its query's newly mined negatives, in place (the data loader
    reads examples by row, so the next batches see them). A query mined short keeps its old negatives, so batches
    stay rectangular. Returns how many pairs changed."""
    mined = {r["query_id"]: r["negative_ids"] for r in records}
    wanted = []
    for ex in examples:
        ids = tuple(mined.get(ex.query_id, ())[:num_negatives]) if isinstance(ex, PairExample) else ()
        wanted.append(ids if len(ids) == num_negatives else None)
    return set_negatives(examples, wanted, corpus)


def set_negatives(examples: MutableSequence, negative_ids: list, corpus: dict[str, str]) -> int:
    """Set each pair's negatives to the ids given for its row (None: leave it), in place; returns how many changed."""
    changed = 0
    for row, (ex, ids) in enumerate(zip(examples, negative_ids, strict=True)):
        if ids is not None and isinstance(ex, PairExample) and tuple(ids) != ex.negative_ids:
            ids = tuple(ids)
            examples[row] = dataclasses.replace(ex, negative_ids=ids, negatives=tuple(corpus[d] for d in ids))
            changed += 1
    return changed


class RemineCallback(pl.Callback):
    def __init__(
        self,
        data: RetrievalData,
        selection: SelectionConfig,
        *,
        top_k: int,
        every_n_steps: int,
        num_negatives: int,
        out_dir: Path,
        batch_size: int = 64,
    ) -> None:
        self.data, self.selection, self.top_k, self.every_n_steps = data, selection, top_k, every_n_steps
        self.num_negatives, self.out_dir, self.batch_size = num_negatives, Path(out_dir), batch_size
        self._last_step = 0
        self._examples: MutableSequence = []  # the data module's examples, bound when training starts
        self._restored: list | None = None  # negatives per row from a checkpoint, applied when training starts

    def state_dict(self) -> dict:
        """The negatives every pair holds now: re-mining changes them in place, so a resumed run must start from
        them, not from those mined before training (replaying only the last re-mining would differ for queries it
        mined short, which keep older negatives)."""
        negatives = [list(getattr(e, "negative_ids", ())) for e in self._examples]
        return {"last_step": self._last_step, "negatives": negatives}

    def load_state_dict(self, state: dict) -> None:
        self._last_step, self._restored = int(state["last_step"]), state["negatives"]

    def on_train_start(self, trainer, pl_module) -> None:
        self._examples = trainer.datamodule.all_examples
        if self._restored is not None:
            set_negatives(self._examples, self._restored, self.data.corpus)
            self._restored = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not step or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        student = pl_module.student
        # no embedding cache: the weights changed since the last pass, an entry would never be read again
        result = mine(self.data, student, student, self.selection, top_k=self.top_k, batch_size=self.batch_size)
        folder = self.out_dir / f"step_{step}"
        write_mining_outputs(result, folder / "negatives.jsonl", folder, self.selection, f"step {step}")
        changed = refresh_negatives(self._examples, result.records, self.data.corpus, self.num_negatives)
        metrics = {"mining/pairs_changed": float(changed), "mining/eligible": float(result.counts["eligible"])}
        if result.diagnostics.get("queries"):
            metrics["mining/false_negative_rate"] = float(result.diagnostics["false_negative_rate"])
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        log.info("re-mined negatives at step %d: %d pairs changed", step, changed)
