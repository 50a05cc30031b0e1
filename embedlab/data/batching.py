"""Batches of similar length drawn from one source at a time.

Why: sequences in a batch are padded to the longest one, so batching texts of similar length cuts the padding
(compute spent on pad tokens) by a large factor. Sorting happens only inside "megabatches" of
`batch_size * megabatch_factor` randomly permuted examples, so batches stay random across the epoch; the batch
order is shuffled too, so long and short batches are interleaved. With several sources (datasets), every batch
holds examples of one source only: in-batch negatives then come from the same distribution as the positive,
which keeps the contrastive task meaningful (a query about biology is not trivially separated from a pool of
forum posts), as multi-dataset embedding training does.

`budget_batches` cuts an ordered list of texts into consecutive batches under a token budget (padded tokens: rows ×
the longest) as well as a row cap, so a batch of long texts holds few rows, one of short texts many, and the memory
of one batch stays bounded: GradCache chunks use it (`embedlab.lit.gradcache`), frozen encoding its width-keeping
variant (`Encoder.encode`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from embedlab.errors import ConfigError


def longest_first(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Positions in the order frozen encoding runs texts: longest first (little padding, and a memory error shows at
    once), equal lengths in input order. `Encoder.encode` batches in this order, and a sharded encoding
    (`embedlab.eval.shards`) cuts it into whole batches, so both run every text in the same batch."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def budget_batches(lengths: Sequence[int], max_rows: int | None, max_tokens: int | None) -> list[tuple[int, int]]:
    """Consecutive `(start, end)` ranges over positions 0..n-1, in the given order, each holding at most `max_rows`
    rows and at most `max_tokens` padded tokens (rows × the longest length in the range); None lifts that cap. A
    text longer than `max_tokens` alone forms a batch of its own. Greedy: optimal for lengths sorted longest first
    (each batch is then padded to its first row), correct in any order."""
    for name, cap in (("max_rows", max_rows), ("max_tokens", max_tokens)):
        if cap is not None and cap < 1:
            raise ConfigError(f"{name} must be at least 1 or None, got {cap}")
    n = len(lengths)
    rows = max_rows or max(n, 1)
    if max_tokens is None:
        return [(start, min(start + rows, n)) for start in range(0, n, rows)]
    ranges, start, longest = [], 0, 0
    for end, length in enumerate(lengths):
        longest_with = max(longest, int(length))
        if end > start and (end - start == rows or (end - start + 1) * longest_with > max_tokens):
            ranges.append((start, end))
            start, longest_with = end, int(length)
        longest = longest_with
    if start < n:
        ranges.append((start, n))
    return ranges


def width_keeping_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None
) -> list[tuple[int, int, int]]:
    """`(start, end, width)` batches for inference: the batches of `batch_size` rows, each split into parts of at
    most `max_tokens` padded tokens that keep the whole batch's width (its longest length). Every text is then padded
    as in the rows-only batching, so its vector does not change, bit for bit (attention reduces over the padded
    width: a narrower padding moves fp32 vectors by ~1e-7), while the memory of one batch is bounded. With lengths
    sorted longest first a batch's rows are alike in length, so the padding kept costs little."""
    out = []
    for start, end in budget_batches(lengths, batch_size, None):
        width = max(int(x) for x in lengths[start:end])
        out += [(start + s, start + e, width) for s, e in budget_batches([width] * (end - start), None, max_tokens)]
    return out


class _EpochHook:
    """Lightning calls `set_epoch` on `dataloader.sampler` and `dataloader.batch_sampler.sampler`, never on the
    batch sampler itself; this stand-in forwards that call so each epoch gets a new order."""

    def __init__(self, owner: LengthGroupedBatchSampler) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset positions; every position exactly once per epoch (minus dropped short batches).

    The order is a pure function of (seed, epoch): `numpy.random.default_rng([seed, epoch])`, independent streams
    (seed 3 at epoch 1 is not seed 4 at epoch 0, as `seed + epoch` would make it). `state_dict` says how far the
    current pass got; after `load_state_dict` the next pass over that epoch starts where it stopped (mid-epoch
    resume), so a resumed run sees exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        sources: Sequence[int] | None = None,
        seed: int = 0,
        group_by_length: bool = True,
        drop_last: bool = False,
        megabatch_factor: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if megabatch_factor < 1:
            raise ConfigError(f"megabatch_factor must be at least 1, got {megabatch_factor}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if sources is None:
            self.sources = np.zeros(len(self.lengths), dtype=np.int64)
        else:
            self.sources = np.asarray(sources, dtype=np.int64)
            if self.sources.shape != self.lengths.shape:
                raise ConfigError(f"{len(self.sources)} source labels for {len(self.lengths)} lengths")
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.group_by_length, self.drop_last, self.megabatch_factor = group_by_length, drop_last, megabatch_factor
        # Positions of each source, in dataset order; sorted source ids make the order independent of hashing.
        self._groups = [np.flatnonzero(self.sources == s) for s in np.unique(self.sources)]
        self.sampler = _EpochHook(self)
        self._yielded = 0  # batches of the current pass handed out, skipped ones included
        self._resume: tuple[int, int] | None = None  # (epoch, batches) to skip on the next pass

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _source_batches(self, positions: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        perm = positions[rng.permutation(len(positions))]
        if self.group_by_length:
            size = self.batch_size * self.megabatch_factor
            chunks = [perm[i : i + size] for i in range(0, len(perm), size)]
            # Stable sort keeps the random order among equal lengths; longest first.
            perm = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [perm[i : i + self.batch_size].tolist() for i in range(0, len(perm), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()  # megabatches are whole multiples of batch_size, so only the source's last one is short
        return batches

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in the order they are yielded."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = [b for group in self._groups for b in self._source_batches(group, rng)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the epoch is read at the first batch, after Lightning's `set_epoch`, not when iter() is called.
        start = 0
        if self._resume is not None:
            (epoch, done), self._resume = self._resume, None
            start = done if epoch == self.epoch else 0  # a checkpoint at an epoch's end resumes at the next one
        self._yielded = start
        for batch in self.batches()[start:]:
            self._yielded += 1  # counted when handed out: with a single-process loader, that is when it is trained on
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(state["epoch"])
        self._resume = (int(state["epoch"]), int(state["batches"]))

    def __len__(self) -> int:
        sizes = [len(g) for g in self._groups]
        if self.drop_last:
            return sum(n // self.batch_size for n in sizes)
        return sum(-(-n // self.batch_size) for n in sizes)


class ShardedBatchSampler(Sampler[list[int]]):
    """This device's share of every global batch: with W devices, `sampler` yields global batches of W·B positions
    and device `rank` takes positions [rank·B, (rank+1)·B) of each.

    Why not a DistributedSampler: the global batch stays one length-grouped, one-source batch (gathered negatives
    then come from one source, as on one device), and every device gets the same number of equal-sized batches,
    which `all_gather` needs. Short global batches are dropped (the wrapped sampler must use `drop_last`).
    """

    def __init__(self, sampler: LengthGroupedBatchSampler, rank: int, world_size: int) -> None:
        if not sampler.drop_last or sampler.batch_size % world_size:
            raise ConfigError("a sharded batch sampler needs drop_last and a global batch size divisible by devices")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside a world of {world_size}")
        self.global_sampler, self.rank, self.world_size = sampler, rank, world_size
        self.sampler = sampler.sampler  # Lightning's set_epoch reaches the global order through this

    def __iter__(self) -> Iterator[list[int]]:
        size = self.global_sampler.batch_size // self.world_size
        for batch in self.global_sampler:
            yield batch[self.rank * size : (self.rank + 1) * size]

    def state_dict(self) -> dict[str, int]:
        return self.global_sampler.state_dict()  # global batches yielded: the same on every device

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_sampler.load_state_dict(state)

    def __len__(self) -> int:
        return len(self.global_sampler)
