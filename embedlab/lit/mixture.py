"""MixtureDataModule: `data.mixture`'s datasets (memory-mapped Arrow sources) → one-dataset batches, each
tokenized with its dataset's instruction and length limits.

A batch's `index` holds global rows (dataset d's position i is row `offsets[d] + i`); `dataset` names which entry
it came from, so a run can count batches per dataset. Nothing here holds a per-example list: examples are read
from the Arrow files a batch at a time (`__getitems__`, which torch's loader calls with the whole batch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from embedlab.data.arrow import ArrowSource
from embedlab.data.collate import Batch, Collator
from embedlab.data.mixture import MixtureBatchSampler
from embedlab.data.training import Example
from embedlab.io import fingerprint
from embedlab.lit.datamodule import ResumableDataLoader


@dataclass(frozen=True)
class MixturePart:
    """One dataset of the mixture, ready to batch."""

    name: str
    source: ArrowSource
    collator: Collator  # its instruction (as the query prompt) and its length limits
    weight: float | None  # None: size-proportional


class MixtureDataset(Dataset):
    """Map-style view over every part: item `row` is `(row, example)`; rows of one batch share one part."""

    def __init__(self, parts: Sequence[MixturePart], sampler: MixtureBatchSampler) -> None:
        self.parts, self.sampler = list(parts), sampler

    def __len__(self) -> int:
        return sum(len(p.source) for p in self.parts)

    def __getitems__(self, rows: Sequence[int]) -> list[tuple[int, Example]]:
        d = self.sampler.dataset_of(rows[0])
        offset = int(self.sampler.offsets[d])
        examples = self.parts[d].source.examples([r - offset for r in rows])
        return list(zip(map(int, rows), examples, strict=True))

    def __getitem__(self, row: int) -> tuple[int, Example]:
        return self.__getitems__([row])[0]


class MixtureCollator:
    """Collates with the batch's own part's collator and records the part (`batch["dataset"]`)."""

    def __init__(self, parts: Sequence[MixturePart], sampler: MixtureBatchSampler) -> None:
        self.parts, self.sampler = list(parts), sampler

    def __call__(self, items: Sequence[tuple[int, Example]]) -> Batch:
        d = self.sampler.dataset_of(items[0][0])
        batch = self.parts[d].collator(items)
        batch["dataset"] = d
        return batch


class BatchCounter(pl.Callback):
    """Training batches per dataset of the mixture (how closely the run followed the weights)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names, self.counts = list(names), Counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.counts[self.names[int(batch["dataset"])]] += 1

    def state_dict(self) -> dict:
        return {"counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.counts = Counter(state.get("counts", {}))


class MixtureDataModule(pl.LightningDataModule):
    def __init__(
        self,
        parts: Sequence[MixturePart],
        *,
        batch_size: int = 32,
        seed: int = 0,
        group_by_length: bool = True,
        drop_last: bool = True,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.parts = list(parts)
        self.source_names = [p.name for p in self.parts]
        self.sizes = {p.name: len(p.source) for p in self.parts}
        weights = [p.weight for p in self.parts]
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.group_by_length, self.drop_last = group_by_length, drop_last
        self._weights = None if all(w is None for w in weights) else weights
        self.batch_sampler = self.sampler_for(batch_size, drop_last)
        self.train_dataset = MixtureDataset(self.parts, self.batch_sampler)
        self.heldout_rows: list[int] = []  # held-out slices of a mixture: not yet (data.heldout must be 0)

    @property
    def fingerprint(self) -> str:
        """The mixture's data: its Arrow files' content keys, names and weights."""
        return fingerprint([(p.name, p.source.folder.name, p.weight) for p in self.parts])

    def sampler_for(self, batch_size: int, drop_last: bool) -> MixtureBatchSampler:
        return MixtureBatchSampler(
            [len(p.source) for p in self.parts],
            batch_size,
            weights=self._weights,
            lengths=[p.source.lengths for p in self.parts],
            seed=self.seed,
            group_by_length=self.group_by_length,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        from embedlab.data.batching import ShardedBatchSampler

        trainer = self.trainer
        world_size = trainer.world_size if trainer is not None else 1
        sampler = self.batch_sampler
        if world_size > 1:  # one global one-dataset batch of batch_size × devices, split by rank
            sampler = ShardedBatchSampler(
                self.sampler_for(self.batch_size * world_size, True), trainer.global_rank, world_size
            )
        return ResumableDataLoader(
            MixtureDataset(self.parts, getattr(sampler, "global_sampler", sampler)),
            batch_sampler=sampler,
            collate_fn=MixtureCollator(self.parts, getattr(sampler, "global_sampler", sampler)),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )
