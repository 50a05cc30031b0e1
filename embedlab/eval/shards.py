"""Sharded encoding: a collection cut into shards of whole batches, encoded one shard at a time (and by every rank
of a process group), stored as memory-mapped files and read back by global row without loading them all.

The order. A frozen encoder runs texts longest first (`embedlab.data.batching.longest_first`) in batches of
`batch_size` rows, each cut further by its token budget (`width_keeping_batches`). A shard is a run of that global
order starting at a multiple of `batch_size`: encoding the shard's texts alone forms exactly the batches a
one-process encoding of the whole collection forms for them, so every vector is the same, bit for bit (fp32 on CPU).
Shard files hold rows in that order; `order.npy` maps a stored position to the collection's row.

A cache entry (folder `<key>/` of the embedding cache): `shard-<start>-<end>.npy` per shard (positions
[start, end)), written atomically as it is finished; `order.npy` (absent when rows are stored in collection order);
and `manifest.json` — shard files, their rows, dtype, dim, rows in all, what was encoded (model fingerprint, texts) —
published atomically once every shard exists. No manifest: an unfinished encoding, which the next run resumes,
re-encoding only the shards that are missing or unreadable.

Ranks. In a torch.distributed process group of W ranks, rank r encodes shards r, r+W, …; after a barrier rank 0
checks and publishes the manifest, and after a second barrier every rank reads it. Every rank of the group must ask
for the same entries in the same order (`EmbeddingCache.across_ranks`); the folder must be shared by all ranks.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.distributed as dist

from embedlab.io import atomic_path, write_json_atomic

log = logging.getLogger(__name__)
FORMAT = "embedlab-shards/1"
MIN_SHARDS = 8  # a collection is cut into at least this many shards (when large enough): up to 8 ranks share it
MIN_SHARD_ROWS = 512  # …but no shard is smaller than this, unless `shard_rows` says so: a small collection is one


# ------------------------------------------------------------------------------------------------------- reading
class RowStack:
    """Row-indexable parts (arrays, memory-mapped shards, other stacks) read as one [N, dim] matrix, optionally
    permuted: collection row i is stored at position `inverse[i]` of the parts laid end to end.

    Indexing by an int, a slice or an index array returns a float32 array and touches only the parts holding those
    rows; `np.asarray` gives the whole matrix (for what fits in RAM); `blocks` walks the parts in stored order."""

    def __init__(self, parts: Sequence, order: np.ndarray | None = None) -> None:
        if not parts:
            raise ValueError("a RowStack needs at least one part")
        dims = {int(p.shape[1]) for p in parts}
        if len(dims) > 1:
            raise ValueError(f"parts of different widths {sorted(dims)}")
        self.parts = list(parts)
        self.starts = np.cumsum([0, *(len(p) for p in parts)])
        self.order = order
        if order is not None and len(order) != self.starts[-1]:
            raise ValueError(f"an order of {len(order)} positions for {self.starts[-1]} rows")
        self._inverse: np.ndarray | None = None
        self.ndim, self.dtype = 2, np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.starts[-1]), int(self.parts[0].shape[1])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Stored positions of collection rows."""
        if self.order is None:
            return rows
        if self._inverse is None:
            self._inverse = np.empty(len(self.order), dtype=np.int64)
            self._inverse[np.asarray(self.order)] = np.arange(len(self.order))
        return self._inverse[rows]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, tuple):  # (rows, columns…): rows here, the rest by numpy
            return self[index[0]][(slice(None), *index[1:])]
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        rows = np.arange(*index.indices(len(self))) if isinstance(index, slice) else np.asarray(index)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = np.where(rows < 0, rows + len(self), rows).astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        pos = self.positions(rows.ravel())
        part = np.searchsorted(self.starts, pos, side="right") - 1
        out = np.empty((len(pos), self.shape[1]), dtype=np.float32)
        for p in np.unique(part):
            here = np.flatnonzero(part == p)
            out[here] = self.parts[p][pos[here] - self.starts[p]]
        return out.reshape(*rows.shape, self.shape[1])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def blocks(self, block_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(collection rows, their vectors) of at most `block_rows` rows, walking the parts in stored order: a
        memory-mapped part is read a block at a time, and no block crosses two parts."""
        for p, part in enumerate(self.parts):
            for stored_rows, block in row_blocks(part, block_rows):
                pos = stored_rows + self.starts[p]
                yield (pos if self.order is None else np.asarray(self.order[pos], dtype=np.int64)), block


def row_blocks(store, block_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, vectors) blocks of an [N, dim] array (rows ascending) or of a `RowStack` (its stored order)."""
    if isinstance(store, RowStack):
        yield from store.blocks(block_rows)
        return
    for start in range(0, len(store), block_rows):
        block = store[start : start + block_rows]
        yield np.arange(start, start + len(block)), block


# ------------------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class ShardPlan:
    bounds: tuple[int, ...]  # shard s holds stored positions [bounds[s], bounds[s + 1])

    @property
    def n_rows(self) -> int:
        return self.bounds[-1]

    @property
    def n_shards(self) -> int:
        return len(self.bounds) - 1

    def rows(self, s: int) -> tuple[int, int]:
        return self.bounds[s], self.bounds[s + 1]


def plan_shards(n_rows: int, unit: int, shard_rows: int) -> ShardPlan:
    """Shards of at most `shard_rows` rows (at least MIN_SHARDS of them, none under MIN_SHARD_ROWS, when the
    collection allows), each a whole number of `unit` rows (the encoder's batch) but the last. The plan depends on
    the collection alone, never on the number of ranks: any world size resumes any other's shards."""
    if unit < 1 or shard_rows < 1:
        raise ValueError(f"unit and shard_rows must be ≥ 1, got {unit}, {shard_rows}")
    per = min(shard_rows, max(MIN_SHARD_ROWS, math.ceil(n_rows / MIN_SHARDS)))
    per = unit * math.ceil(per / unit)
    return ShardPlan((*range(0, n_rows, per), n_rows) if n_rows else (0, 0))


# ------------------------------------------------------------------------------------------------------- ranks
@dataclass(frozen=True)
class Ranks:
    """This process's place in the torch.distributed process group that shares an encoding (0 of 1: alone)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def of_process_group(cls) -> Ranks:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def rank0_says(self, value: bool) -> bool:
        """Rank 0's `value` on every rank: the ranks take the same branch, so they meet at the same barriers."""
        if self.world == 1:
            return value
        return bool(self.from_rank0(value))

    def from_rank0(self, value):
        """Rank 0's `value` (any picklable object) on every rank: e.g. the metrics only rank 0 computed."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


@contextmanager
def process_group_from_env() -> Iterator[Ranks]:
    """The ranks torchrun started (WORLD_SIZE > 1 in the environment, with RANK and MASTER_ADDR/PORT), joined in a
    gloo process group for the duration; alone, nothing. Gloo on any device: the ranks exchange barriers and small
    objects only, their encodings meet through files. A job Lightning runs joins Lightning's group instead."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield Ranks.of_process_group()
        return
    dist.init_process_group("gloo", init_method="env://")
    try:
        yield Ranks.of_process_group()
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------------- writing
def shard_file(folder: Path, start: int, end: int) -> Path:
    return folder / f"shard-{start:010d}-{end:010d}.npy"


def readable(path: Path, rows: int, dim: int | None = None) -> np.ndarray | None:
    """The memory-mapped float32 [rows, dim] array at `path`, or None when it is missing, cut short or foreign."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return None
    ok = arr.ndim == 2 and arr.shape[0] == rows and arr.dtype == np.float32 and dim in (None, arr.shape[1])
    return arr if ok else None


def load_published(folder: Path, n_rows: int) -> RowStack | None:
    """The published entry in `folder`, or None when it has no manifest or any part of it is unreadable."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT or manifest["n_rows"] != n_rows:
            return None
        dim = int(manifest["dim"])
        parts = [readable(folder / s["file"], s["rows"][1] - s["rows"][0], dim) for s in manifest["shards"]]
        order = readable_order(folder / manifest["order"], n_rows) if manifest["order"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(p is None for p in parts) or (manifest["order"] and order is None):
        log.warning("embedding cache entry %s is damaged: its missing shards are encoded again", folder.name[:12])
        return None
    return RowStack(parts, order)


def readable_order(path: Path, n_rows: int) -> np.ndarray | None:
    try:
        order = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return None
    return order if order.shape == (n_rows,) and order.dtype == np.int64 else None


@dataclass(frozen=True)
class Encoding:
    """How to encode a collection's rows: `encode_rows(rows)` gives their vectors in that order; `order_of()` the
    order rows are stored and shards cut in (None: collection order); `unit` the rows a shard is a multiple of."""

    encode_rows: Callable[[np.ndarray], np.ndarray]
    order_of: Callable[[], np.ndarray] | None = None
    unit: int = 1


def encode_sharded(folder: Path, plan: ShardPlan, how: Encoding, describe: dict, ranks: Ranks = Ranks()) -> RowStack:
    """Encode this rank's shards of `plan` that are not on disk yet into `folder`, then publish the entry (rank 0,
    once every rank is done) and read it. The stored order is computed once, by rank 0, and kept beside the shards."""
    order = None
    if how.order_of is not None:
        path = folder / "order.npy"
        if ranks.rank == 0 and readable_order(path, plan.n_rows) is None:
            _save(path, np.asarray(how.order_of(), dtype=np.int64))
        ranks.barrier()
        order = readable_order(path, plan.n_rows)
    for s in range(ranks.rank, plan.n_shards, ranks.world):
        start, end = plan.rows(s)
        path = shard_file(folder, start, end)
        if readable(path, end - start) is not None:
            continue  # finished by an earlier, interrupted run
        rows = np.arange(start, end) if order is None else np.asarray(order[start:end], dtype=np.int64)
        vectors = np.ascontiguousarray(how.encode_rows(rows), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != end - start:
            raise ValueError(f"{end - start} rows asked for, {vectors.shape} encoded")
        _save(path, vectors)
        log.info(
            "embedding shard %s rows [%d, %d) of %d written by rank %d of %d",
            *(folder.name[:12], start, end, plan.n_rows, ranks.rank, ranks.world),
        )
    ranks.barrier()
    if ranks.rank == 0:
        _publish(folder, plan, order is not None, describe)
    ranks.barrier()
    entry = load_published(folder, plan.n_rows)
    if entry is None:
        raise RuntimeError(f"{folder}: the published embedding entry cannot be read")
    return entry


def _publish(folder: Path, plan: ShardPlan, ordered: bool, describe: dict) -> None:
    shards = [plan.rows(s) for s in range(plan.n_shards)]
    parts = [readable(shard_file(folder, a, b), b - a) for a, b in shards]
    if any(p is None for p in parts) or len({p.shape[1] for p in parts}) > 1:
        missing = [f"[{a}, {b})" for (a, b), p in zip(shards, parts, strict=True) if p is None]
        raise RuntimeError(f"{folder}: shards {', '.join(missing)} missing or of other widths; nothing published")
    manifest = {
        "format": FORMAT,
        "n_rows": plan.n_rows,
        "dim": int(parts[0].shape[1]),
        "dtype": "float32",
        "order": "order.npy" if ordered else None,
        "shards": [{"file": shard_file(folder, a, b).name, "rows": [a, b]} for a, b in shards],
        "describe": describe,
    }
    write_json_atomic(folder / "manifest.json", manifest)


def _save(path: Path, array: np.ndarray) -> None:
    # np.save on a path would append ".npy" to the temp name: hand it an open file
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
