"""EmbeddingDataModule: training examples (one or several named datasets) → length-grouped, one-source batches.

All examples are kept in one flat list (`all_examples`, datasets in the order given); a batch's `index` holds rows
of that list, which are also the rows of the teacher table built over it. A seeded held-out slice is kept out of
training so student–teacher agreement can be measured on texts the student never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from embedlab.data.batching import LengthGroupedBatchSampler, ShardedBatchSampler
from embedlab.data.collate import Collator
from embedlab.data.training import Example, example_text
from embedlab.errors import ConfigError


class IndexedDataset(Dataset):
    """Map-style view of `examples` at `rows`; item k is `(rows[k], examples[rows[k]])` so the flat row travels
    with the example into the batch."""

    def __init__(self, examples: Sequence[Example], rows: Sequence[int] | None = None) -> None:
        self.examples = examples
        self.rows = list(range(len(examples))) if rows is None else [int(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[int, Example]:
        row = self.rows[k]
        return row, self.examples[row]


class ResumableDataLoader(DataLoader):
    """Lightning resumes a run mid-epoch only if the train loader has `state_dict`/`load_state_dict`; without them
    it replays the interrupted epoch from its first batch. The state is the batch sampler's position in its epoch.
    A worker process would fetch batches ahead of training (and before Lightning sets the epoch), so the position
    is exact only with `num_workers=0`; resuming with workers is refused rather than silently off."""

    def state_dict(self) -> dict[str, int]:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self.num_workers:
            raise ConfigError(f"resuming mid-epoch needs num_workers=0 (the loader has {self.num_workers})")
        self.batch_sampler.load_state_dict(state)


def example_length(example: Example) -> int:
    """Cheap length proxy for grouping: characters of the query (or text). Tokenizing every example first would
    cost a full pass over the data; character count orders texts almost as well."""
    return len(example_text(example))


class EmbeddingDataModule(pl.LightningDataModule):
    def __init__(
        self,
        examples: list[Example] | dict[str, list[Example]],
        collator: Collator,
        *,
        batch_size: int = 32,
        seed: int = 0,
        group_by_length: bool = True,
        drop_last: bool = False,
        num_workers: int = 0,
        heldout: int = 0,
    ) -> None:
        super().__init__()
        named = examples if isinstance(examples, dict) else {"train": examples}
        self.source_names = list(named)
        self._examples: list[Example] = [e for exs in named.values() for e in exs]
        self._sources = np.repeat(np.arange(len(named)), [len(exs) for exs in named.values()])
        if not self._examples:
            raise ConfigError("no training examples")
        kinds = {name: sorted({type(e).__name__ for e in exs}) for name, exs in named.items() if exs}
        if len({k for ks in kinds.values() for k in ks}) > 1:
            raise ConfigError(f"training sources mix example types {kinds}; every source must give the same type")
        if heldout < 0 or heldout >= len(self._examples):
            raise ConfigError(
                f"heldout={heldout} must be at least 0 and leave training examples (there are {len(self._examples)})"
            )
        self.collator, self.batch_size, self.seed = collator, batch_size, seed
        self.group_by_length, self.drop_last, self.num_workers = group_by_length, drop_last, num_workers
        # A seeded shuffle (not the last rows) so the held-out slice is not all from the last dataset.
        order = np.random.default_rng(seed).permutation(len(self._examples))
        cut = len(order) - heldout
        self.train_rows: list[int] = sorted(order[:cut].tolist())
        self.heldout_rows: list[int] = sorted(order[cut:].tolist())
        self.train_dataset = IndexedDataset(self._examples, self.train_rows)
        self.batch_sampler = self._length_grouped(batch_size, drop_last)

    def _length_grouped(self, batch_size: int, drop_last: bool) -> LengthGroupedBatchSampler:
        return LengthGroupedBatchSampler(
            [example_length(self._examples[r]) for r in self.train_rows],
            batch_size,
            sources=self._sources[self.train_rows].tolist(),
            seed=self.seed,
            group_by_length=self.group_by_length,
            drop_last=drop_last,
        )

    def sharded_sampler(self, rank: int, world_size: int) -> ShardedBatchSampler:
        """`batch_size` per device; one global length-grouped batch of `batch_size × world_size` split by rank."""
        return ShardedBatchSampler(self._length_grouped(self.batch_size * world_size, True), rank, world_size)

    @property
    def all_examples(self) -> list[Example]:
        """Every example (training and held-out), datasets flattened in the order given: `index` rows this list."""
        return self._examples

    @property
    def heldout_examples(self) -> list[Example]:
        return [self._examples[r] for r in self.heldout_rows]

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer  # None outside a Trainer
        world_size = trainer.world_size if trainer is not None else 1
        sampler = self.batch_sampler if world_size == 1 else self.sharded_sampler(trainer.global_rank, world_size)
        return ResumableDataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.collator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # Its own generator: a loader draws a base seed at every iter(); from the global generator, that draw
            # would shift dropout by one whenever Lightning re-creates the iterator, which differs on resume.
            generator=torch.Generator().manual_seed(self.seed),
        )
