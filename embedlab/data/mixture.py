"""Batches from a mixture of datasets: each batch from one dataset, datasets drawn by weight, deterministic per seed,
resumable mid-epoch — in memory that does not grow with the number of examples.

Why one dataset per batch: in-batch negatives then come from the same distribution as the positive (the rule of
multi-dataset embedding training, and of sentence-transformers' proportional / round-robin batch samplers).

How, without an n-long array per dataset:
- Each dataset's order is a seeded pseudo-random bijection of [0, n) (`Shuffle`, a Feistel network with cycle
  walking) evaluated a megabatch at a time; inside a megabatch of `batch_size × megabatch_factor` positions the
  examples are sorted by length (less padding) and the batches' order is shuffled. When a dataset runs out it starts
  a new pass with a new order.
- Which dataset each step draws from is stratified: every block of `block` steps holds each dataset's share of the
  block's batches (largest remainders, the rounding carried to the next block), in a seeded random order. Counts
  therefore follow the weights to within one batch per dataset at every block's end.
- An epoch is as many steps as one pass over every dataset takes (sum of the datasets' batches per pass).
- The state is (epoch, batches handed out); resuming replays the block allocations (cheap) to find each dataset's
  position, so the resumed run yields exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from embedlab.errors import ConfigError

_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constants: a cheap integer mixing function per Feistel round
_MIX = np.uint64(0xBF58476D1CE4E5B9)


class Shuffle:
    """A seeded permutation of range(n), evaluated at any positions: `Shuffle(n, key)(np.arange(n))` is a
    permutation of range(n), computed without holding one."""

    def __init__(self, n: int, key: Sequence[int], rounds: int = 4) -> None:
        bits = max(2, (n - 1).bit_length())
        self.n, self.half = n, (bits + 1) // 2  # a 2·half-bit domain ≥ n: at most 4n, so few cycle-walking steps
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = np.random.default_rng(list(key)).integers(0, 2**63, size=rounds, dtype=np.uint64)

    def _rounds(self, x: np.ndarray) -> np.ndarray:
        half = np.uint64(self.half)
        left, right = x >> half, x & self.mask
        for key in self.keys:
            h = (right ^ key) * _MULT
            h = (h ^ (h >> np.uint64(31))) * _MIX
            left, right = right, left ^ ((h >> np.uint64(29)) & self.mask)
        return (left << half) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # the mixing multiplies wrap around on purpose
            out = self._rounds(np.asarray(positions, dtype=np.uint64))
            outside = out >= self.n
            while outside.any():  # cycle walking: a bijection of the larger domain restricted to [0, n)
                out[outside] = self._rounds(out[outside])
                outside = out >= self.n
        return out.astype(np.int64)


class DatasetStream:
    """One dataset's batches (positions in that dataset) for one epoch, pass after pass, batch j on demand."""

    def __init__(
        self,
        n: int,
        lengths: Callable[[np.ndarray], np.ndarray] | None,
        key: tuple[int, ...],
        batch_size: int,
        megabatch_factor: int,
        drop_last: bool,
    ) -> None:
        self.n, self.lengths, self.key, self.batch_size = n, lengths, key, batch_size
        self.factor, self.drop_last = megabatch_factor, drop_last
        self.per_pass = n // batch_size if drop_last else -(-n // batch_size)
        self._cached: tuple[tuple[int, int], list[np.ndarray]] | None = None

    def batch(self, j: int) -> np.ndarray:
        p, r = divmod(j, self.per_pass)
        m, i = divmod(r, self.factor)
        if self._cached is None or self._cached[0] != (p, m):
            self._cached = ((p, m), self._megabatch(p, m))
        return self._cached[1][i]

    def _megabatch(self, p: int, m: int) -> list[np.ndarray]:
        size = self.batch_size * self.factor
        positions = Shuffle(self.n, (*self.key, p))(np.arange(m * size, min((m + 1) * size, self.n)))
        if self.lengths is not None:  # longest first; the stable sort keeps the random order among equal lengths
            positions = positions[np.argsort(-self.lengths(positions), kind="stable")]
        batches = [positions[i : i + self.batch_size] for i in range(0, len(positions), self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        order = np.random.default_rng([*self.key, p, m]).permutation(len(batches))
        return [batches[k] for k in order]


def apportion(exact: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to `total`, each within one of `exact` (largest remainders)."""
    exact = np.maximum(exact, 0.0)
    alloc = np.floor(exact).astype(np.int64)
    short = total - int(alloc.sum())
    if short > 0:
        alloc[np.argsort(-(exact - alloc), kind="stable")[:short]] += 1
    for _ in range(-short):  # clamped negatives rounded up: take the excess back from the largest
        alloc[int(np.argmax(alloc))] -= 1
    return alloc


class _EpochHook:
    """Lightning calls `set_epoch` on `batch_sampler.sampler`; this forwards it (see batching.py)."""

    def __init__(self, owner: MixtureBatchSampler) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


class MixtureBatchSampler(Sampler[list[int]]):
    """Yields lists of global rows (dataset d's position i is row `offsets[d] + i`), one dataset per batch."""

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        *,
        weights: Sequence[float] | None = None,
        lengths: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
        seed: int = 0,
        group_by_length: bool = True,
        drop_last: bool = False,
        megabatch_factor: int = 50,
        block: int = 128,
    ) -> None:
        if batch_size < 1 or megabatch_factor < 1:
            raise ConfigError(f"batch_size and megabatch_factor must be at least 1 ({batch_size}, {megabatch_factor})")
        self.sizes = [int(n) for n in sizes]
        if not self.sizes or min(self.sizes) < 1:
            raise ConfigError(f"every dataset of a mixture needs examples; sizes {self.sizes}")
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.drop_last, self.megabatch_factor, self.group_by_length = drop_last, megabatch_factor, group_by_length
        self.lengths = list(lengths) if lengths is not None and group_by_length else [None] * len(self.sizes)
        per_pass = [n // batch_size if drop_last else -(-n // batch_size) for n in self.sizes]
        if min(per_pass) < 1:
            raise ConfigError(f"with drop_last every dataset needs at least batch_size={batch_size} examples: {sizes}")
        # No weights: each dataset's batches per pass, so an epoch is exactly one pass over every dataset.
        weights = np.asarray(per_pass if weights is None else weights, dtype=np.float64)
        if weights.shape != (len(self.sizes),) or (weights <= 0).any() or not np.isfinite(weights).all():
            raise ConfigError(f"mixture weights must be positive, one per dataset; got {weights.tolist()}")
        self.shares = weights / weights.sum()
        self.steps = sum(per_pass)  # one epoch: a pass over every dataset's batches
        self.block = max(block, int(np.ceil(2 / self.shares.min())))  # every share ≥ 2 batches per block
        self.sampler = _EpochHook(self)
        self._yielded = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _streams(self) -> list[DatasetStream]:
        return [
            DatasetStream(
                n, lengths, (self.seed, self.epoch, d), self.batch_size, self.megabatch_factor, self.drop_last
            )
            for d, (n, lengths) in enumerate(zip(self.sizes, self.lengths, strict=True))
        ]

    def _blocks(self) -> Iterator[np.ndarray]:
        """This epoch's dataset choices, a block at a time."""
        carry = np.zeros(len(self.sizes))
        for c, start in enumerate(range(0, self.steps, self.block)):
            size = min(self.block, self.steps - start)
            exact = size * self.shares + carry
            alloc = apportion(exact, size)
            carry = exact - alloc
            choices = np.repeat(np.arange(len(self.sizes)), alloc)
            yield choices[np.random.default_rng([self.seed, self.epoch, c, 1]).permutation(size)]

    def schedule(self) -> np.ndarray:
        """The whole epoch's dataset choices (for tests and reports; iteration never holds them all)."""
        return np.concatenate(list(self._blocks()))

    def __iter__(self) -> Iterator[list[int]]:
        start = 0
        if self._resume is not None:
            (epoch, done), self._resume = self._resume, None
            start = done if epoch == self.epoch else 0
        streams, taken, step = self._streams(), np.zeros(len(self.sizes), dtype=np.int64), 0
        self._yielded = start
        for choices in self._blocks():
            if step + len(choices) <= start:  # a block before the resumed position: only its counts matter
                taken += np.bincount(choices, minlength=len(self.sizes))
                step += len(choices)
                continue
            for d in choices:
                if step >= start:
                    self._yielded += 1  # counted when handed out (single-process loader: when trained on)
                    yield (self.offsets[d] + streams[d].batch(int(taken[d]))).tolist()
                taken[d] += 1
                step += 1

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self._yielded, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        saved = int(state.get("batch_size", self.batch_size))
        if saved != self.batch_size:  # another world size: another schedule, the position would mean other batches
            raise ConfigError(
                f"resume: the checkpoint's global batch held {saved} examples, this run's {self.batch_size} "
                "(data.batch_size × devices): resume on as many devices as the run started with"
            )
        self.set_epoch(state["epoch"])
        self._resume = (int(state["epoch"]), int(state["batches"]))

    def dataset_of(self, row: int) -> int:
        return int(np.searchsorted(self.offsets, row, side="right") - 1)

    def __len__(self) -> int:
        return self.steps
