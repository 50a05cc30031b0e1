"""On-disk embedding cache: a frozen model never encodes the same texts twice.

The key is a fingerprint of everything that changes the vectors: the model's weights and settings
(`Encoder.fingerprint`), the texts in order, and the prompt. A changed input gives a new key, so a stale entry can
never be returned. Entries are written atomically and read memory-mapped, in one of two layouts:

    <root>/<k[:2]>/<key>.npy + <key>.json   a collection of one shard (small ones; every entry before sharding)
    <root>/<k[:2]>/<key>/                   a collection of several shards (`embedlab.eval.shards`):
        shard-<start>-<end>.npy                 rows [start, end) of the length-sorted order, written as finished
        order.npy                               stored position -> collection row
        manifest.json                           shards, rows, dim, dtype, what was encoded; published last

Every encoding goes through `get_or_encode`: one shard at a time in RAM, resumed from its finished shards after a
kill, and split over the ranks of a process group on a cache made `sharing_ranks()`. A one-shard entry is returned as
an array, a sharded one as a `RowStack` (indexable by rows, `np.asarray`-able, walked block by block by
`search_blocked`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from embedlab.data.batching import longest_first
from embedlab.eval.shards import Encoding, Ranks, RowStack, encode_sharded, load_published, plan_shards
from embedlab.hub import cache_dir
from embedlab.io import atomic_path, fingerprint
from embedlab.models.encoder import HEAD_BLOCK_ROWS

log = logging.getLogger(__name__)
DEFAULT_SHARD_ROWS = 16_384  # rows per shard at most: 64 MB of float32 at 1024 dims, the RAM one shard holds


def default_cache_root() -> Path:
    return cache_dir() / "embeddings"


class EmbeddingCache:
    def __init__(
        self,
        root: str | Path | None = None,
        bypass: tuple = (),
        *,
        shard_rows: int = DEFAULT_SHARD_ROWS,
        across_ranks: bool = False,
        scratch: Path | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.hits = self.misses = 0
        self.bypass = bypass  # encoders `encode_cached` never caches (see `bypassing`)
        self.shard_rows = shard_rows  # rows per shard at most (see `embedlab.eval.shards.plan_shards`)
        self.across_ranks = across_ranks  # split encodings over the process group's ranks (see `sharing_ranks`)
        self.scratch = scratch  # where ranks sharing encodings meet for a bypassed encoder (see `for_bypassed`)

    def _like(self, **changes) -> EmbeddingCache:
        settings = {"bypass": self.bypass, "shard_rows": self.shard_rows, "across_ranks": self.across_ranks}
        return EmbeddingCache(self.root, **{**settings, "scratch": self.scratch, **changes})

    def bypassing(self, encoder) -> EmbeddingCache:
        """This cache (same folder, own counters) with `encoder` left out: a model being trained changes at every
        step, so caching it would hash all its weights and write vectors no one reads again."""
        return self._like(bypass=(*self.bypass, encoder))

    def sharing_ranks(self, scratch: Path | None = None) -> EmbeddingCache:
        """This cache (same folder, own counters) splitting each encoding over the ranks of the torch.distributed
        process group, when one is initialised: rank r encodes shards r, r+W, … Every rank must then ask for the
        same encodings in the same order (they meet at barriers), so it is opt-in: rank-0-only evaluation keeps
        the plain cache. The ranks meet through files: a bypassed encoder's shards go to `scratch` (a folder of
        the job, which removes it), or, without one, every rank encodes all of its texts."""
        return self._like(across_ranks=True, scratch=scratch)

    def for_bypassed(self) -> EmbeddingCache | None:
        """Where a bypassed encoder's vectors go: nowhere, unless ranks share encodings through `scratch`."""
        if self.across_ranks and self.scratch is not None:
            return EmbeddingCache(self.scratch, shard_rows=self.shard_rows, across_ranks=True)
        return None

    def key(self, model_fingerprint: str, texts: Sequence[str], prompt: str) -> str:
        return fingerprint([model_fingerprint, prompt, len(texts), fingerprint(texts)])

    def path(self, key: str) -> Path:
        """A one-shard entry's file; a sharded entry is the folder of the same name without `.npy`."""
        return self.root / key[:2] / f"{key}.npy"

    def ranks(self) -> Ranks:
        return Ranks.of_process_group() if self.across_ranks else Ranks()

    def has(self, key: str) -> bool:
        """Whether `key` is stored, as rank 0 sees it (ranks sharing encodings must take the same branch)."""
        path = self.path(key)
        return self.ranks().rank0_says(path.exists() or (path.with_suffix("") / "manifest.json").exists())

    def lookup(self, key: str, n_rows: int) -> np.ndarray | RowStack | None:
        """The stored [n_rows, dim] entry for `key` in either layout, None when absent or damaged."""
        one = self._one_shard(key, n_rows)
        return one if one is not None else load_published(self.path(key).with_suffix(""), n_rows)

    def _one_shard(self, key: str, n_rows: int) -> np.ndarray | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            emb = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as e:  # cut short, empty or not an .npy at all
            log.warning("unreadable embedding cache entry %s (%s): recomputing", path.name[:12], e)
            return None
        # a truncated or foreign file is recomputed, never trusted
        return emb if emb.ndim == 2 and emb.shape[0] == n_rows else None

    def get_or_encode(
        self, key: str, n_rows: int, make: Callable[[], Encoding], describe: dict | None = None
    ) -> np.ndarray | RowStack:
        """The cached [n_rows, dim] matrix for `key`; on a miss `make()` says how to encode rows, and the shards
        not on disk yet are encoded (by this rank's share on a cache `sharing_ranks`)."""
        ranks = self.ranks()
        entry = self.lookup(key, n_rows)
        if ranks.rank0_says(entry is not None):
            return self._hit(key, n_rows, entry)
        self.misses += 1
        how = make()
        plan = plan_shards(n_rows, how.unit, self.shard_rows)
        if plan.n_shards > 1:
            return encode_sharded(self.path(key).with_suffix(""), plan, how, describe or {}, ranks)
        if ranks.rank == 0:  # one shard: in collection order (an encoder sorts its texts itself)
            self._store(key, how.encode_rows(np.arange(n_rows)), describe)
        ranks.barrier()
        return self._one_shard(key, n_rows)

    def _hit(self, key: str, n_rows: int, entry: np.ndarray | RowStack | None) -> np.ndarray | RowStack:
        if entry is None:  # another rank than 0, which read it a moment ago: look again
            entry = self.lookup(key, n_rows)
        if entry is None:
            raise RuntimeError(f"embedding cache entry {key[:12]} vanished or differs between ranks")
        self.hits += 1
        log.info("embedding cache hit %s (%d x %d)", key[:12], *entry.shape)
        return entry

    def _store(self, key: str, emb: np.ndarray, describe: dict | None) -> np.ndarray:
        path = self.path(key)
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        # np.save on a path would append ".npy" to the temp name: hand it an open file
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, emb)
        if describe is not None:
            with atomic_path(path.with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps(describe, indent=2, default=str))
        return emb


def cache_for_ranks(
    cache: EmbeddingCache | None, scratch: Path, shard_rows: int = DEFAULT_SHARD_ROWS
) -> EmbeddingCache | None:
    """The one rule for which cache a job's encodings go through. Alone (no torch.distributed process group, or a
    group of one): `cache` as given, None included. In a group of several ranks every encoding is split over them
    (`sharing_ranks`), and ranks meet through files: `cache`'s folder, with what it bypasses (a model being trained)
    and everything when there is no cache in `scratch`, a folder of the job that the job removes."""
    if Ranks.of_process_group().world == 1:
        return cache
    return (cache or EmbeddingCache(scratch, shard_rows=shard_rows)).sharing_ranks(scratch)


def encode_cached(
    encoder,
    texts: Sequence[str],
    *,
    kind: str,
    cache: EmbeddingCache | None,
    batch_size: int,
    model_fingerprint: str | None = None,
    task: str | None = None,
) -> np.ndarray | RowStack:
    """Encode through the cache when given. `kind`: "query" / "document" (with that prompt), "text" (no prompt), or
    "features" (pooled backbone output without projection or normalisation, no prompt — what a projection is fitted
    on). A "text" entry is a "document" entry of an encoder without a document prompt: the key is the same.

    With a cache, an encoder with a projection head gets its vectors by applying the head to cached pooled features
    of the same prompted texts, and any encoder whose backbone already left such features reuses them: frozen
    encoders that share a backbone (the student before training, the shipped student) encode a corpus once. A
    cached encoding is sharded (see the module docstring): an array for one shard, a `RowStack` for several."""
    if kind not in ("query", "document", "text", "features"):
        raise ValueError(f"kind must be query, document, text or features, got {kind!r}")
    if cache is not None and any(encoder is e for e in cache.bypass):
        cache = cache.for_bypassed()  # a model being trained: neither its vectors nor its features are kept
    query_prompt = encoder.query_prompt_for(task) if hasattr(encoder, "query_prompt_for") else encoder.query_prompt
    prompt = {"query": query_prompt, "document": encoder.document_prompt}.get(kind, "")

    def encode(subset: list[str]) -> np.ndarray:
        if kind == "features":
            return encoder.encode(subset, batch_size=batch_size, head=False, desc="features")
        if kind == "text":
            return encoder.encode(subset, batch_size=batch_size, desc="texts")
        if kind == "query":  # with its task: an instruction-tuned encoder has one instruction per task
            return encoder.encode_queries(subset, batch_size=batch_size, **({"task": task} if task else {}))
        return encoder.encode_documents(subset, batch_size=batch_size)

    if cache is None:
        return encode(list(texts))
    model_fp = model_fingerprint or encoder.fingerprint(head=kind != "features")
    key = cache.key(model_fp, texts, prompt)
    describe = {"model": encoder.describe(), "model_fingerprint": model_fp, "kind": kind, "n_texts": len(texts)}

    def make() -> Encoding:
        shared = None if kind == "features" else shared_features(encoder, texts, prompt, cache, batch_size, kind)
        if shared is not None:  # the head over cached features: in collection order, in apply_head's own blocks
            return Encoding(lambda rows: encoder.apply_head(shared[rows]), unit=HEAD_BLOCK_ROWS)
        return _backbone_pass(encoder, texts, prompt, encode, batch_size)

    return cache.get_or_encode(key, len(texts), make, describe)


def _backbone_pass(encoder, texts: Sequence[str], prompt: str, encode, batch_size: int) -> Encoding:
    """Shards of whole length-sorted batches, in the encoder's own order (`Encoder.token_lengths`); a duck-typed
    encoder without that order is stored in collection order."""
    order_of = None
    if hasattr(encoder, "token_lengths"):

        def order_of() -> np.ndarray:
            return longest_first(encoder.token_lengths(texts, prompt))  # a chunk at a time

    return Encoding(lambda rows: encode(take(texts, rows)), order_of, unit=batch_size)


def take(texts: Sequence[str], rows: np.ndarray) -> list[str]:
    """The texts at `rows`: by the collection's own gather when it has one (an Arrow column reads only those rows)."""
    gather = getattr(texts, "take", None)
    return gather(rows) if gather is not None else [texts[i] for i in rows]


def shared_features(
    encoder, texts: Sequence[str], prompt: str, cache: EmbeddingCache, batch_size: int, kind: str
) -> np.ndarray | RowStack | None:
    """Cached pooled features of the prompted texts (prompt tokens pooled or not, as the encoder says): computed
    for an encoder with a projection head, reused by any encoder of the same backbone; None for a head-less encoder
    when no such entry exists (it caches its vectors alone: features would double the disk for nothing)."""
    if not hasattr(encoder, "apply_head"):
        return None
    model_fp = encoder.fingerprint(head=False)
    key = cache.key(model_fp, texts, prompt)
    if getattr(encoder, "projection", None) is None and not cache.has(key):
        return None
    describe = {"model": encoder.describe(), "model_fingerprint": model_fp, "kind": f"{kind} features"}

    def encode(subset: list[str]) -> np.ndarray:
        return encoder.encode(subset, batch_size=batch_size, prompt=prompt, head=False, desc=f"{kind} features")

    return cache.get_or_encode(
        key,
        len(texts),
        lambda: _backbone_pass(encoder, texts, prompt, encode, batch_size),
        {**describe, "n_texts": len(texts)},
    )
