"""On-disk embedding cache: a frozen model never encodes the same texts twice.

The key is a fingerprint of everything that changes the vectors: the model's weights and settings
(`Encoder.fingerprint`), the texts in order, and the prompt. Entries are `.npy` files written atomically and
read memory-mapped; a changed input gives a new key, so a stale entry can never be returned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from embedlab.hub import cache_dir
from embedlab.io import atomic_path, fingerprint

log = logging.getLogger(__name__)


def default_cache_root() -> Path:
    return cache_dir() / "embeddings"


class EmbeddingCache:
    def __init__(self, root: str | Path | None = None, bypass: tuple = ()) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.hits = self.misses = 0
        self.bypass = bypass  # encoders `encode_cached` never caches (see `bypassing`)

    def bypassing(self, encoder) -> EmbeddingCache:
        """This cache (same folder, own counters) with `encoder` left out: a model being trained changes at every
        step, so caching it would hash all its weights and write vectors no one reads again."""
        return EmbeddingCache(self.root, (*self.bypass, encoder))

    def key(self, model_fingerprint: str, texts: Sequence[str], prompt: str) -> str:
        return fingerprint([model_fingerprint, prompt, len(texts), fingerprint(texts)])

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get_or_compute(
        self, key: str, n_rows: int, compute: Callable[[], np.ndarray], describe: dict | None = None
    ) -> np.ndarray:
        """Return the cached matrix for `key`, computing and storing it on a miss."""
        path = self.path(key)
        if path.exists():
            try:
                emb = np.load(path, mmap_mode="r")
            except (ValueError, OSError, EOFError) as e:  # cut short, empty or not an .npy at all
                log.warning("unreadable embedding cache entry %s (%s): recomputing", path.name[:12], e)
                emb = None
            # a truncated or foreign file is recomputed, never trusted
            if emb is not None and emb.ndim == 2 and emb.shape[0] == n_rows:
                self.hits += 1
                log.info("embedding cache hit %s (%d x %d)", path.name[:12], *emb.shape)
                return emb
        self.misses += 1
        emb = np.ascontiguousarray(compute(), dtype=np.float32)
        # np.save on a path would append ".npy" to the temp name: hand it an open file
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, emb)
        if describe is not None:
            with atomic_path(path.with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps(describe, indent=2, default=str))
        return emb


def encode_cached(
    encoder,
    texts: Sequence[str],
    *,
    kind: str,
    cache: EmbeddingCache | None,
    batch_size: int,
    model_fingerprint: str | None = None,
    task: str | None = None,
) -> np.ndarray:
    """Encode through the cache when given. `kind`: "query" / "document" (with that prompt), "text" (no prompt), or
    "features" (pooled backbone output without projection or normalisation, no prompt — what a projection is fitted
    on). A "text" entry is a "document" entry of an encoder without a document prompt: the key is the same.

    With a cache, an encoder with a projection head gets its vectors by applying the head to cached pooled features
    of the same prompted texts, and any encoder whose backbone already left such features reuses them: frozen
    encoders that share a backbone (the student before training, the shipped student) encode a corpus once."""
    if kind not in ("query", "document", "text", "features"):
        raise ValueError(f"kind must be query, document, text or features, got {kind!r}")
    if cache is not None and any(encoder is e for e in cache.bypass):
        cache = None  # a model being trained: neither its vectors nor its features are cached
    query_prompt = encoder.query_prompt_for(task) if hasattr(encoder, "query_prompt_for") else encoder.query_prompt
    prompt = {"query": query_prompt, "document": encoder.document_prompt}.get(kind, "")

    def compute() -> np.ndarray:
        if kind == "features":
            return encoder.encode(list(texts), batch_size=batch_size, head=False, desc="features")
        if (
            cache is not None
            and (shared := shared_features(encoder, texts, prompt, cache, batch_size, kind)) is not None
        ):
            return encoder.apply_head(shared)
        if kind == "text":
            return encoder.encode(list(texts), batch_size=batch_size, desc="texts")
        if kind == "query":  # with its task: an instruction-tuned encoder has one instruction per task
            return encoder.encode_queries(list(texts), batch_size=batch_size, **({"task": task} if task else {}))
        return encoder.encode_documents(list(texts), batch_size=batch_size)

    if cache is None:
        return compute()
    model_fp = model_fingerprint or encoder.fingerprint(head=kind != "features")
    key = cache.key(model_fp, texts, prompt)
    describe = {"model": encoder.describe(), "model_fingerprint": model_fp, "kind": kind, "n_texts": len(texts)}
    return cache.get_or_compute(key, len(texts), compute, describe=describe)


def shared_features(
    encoder, texts: Sequence[str], prompt: str, cache: EmbeddingCache, batch_size: int, kind: str
) -> np.ndarray | None:
    """Cached pooled features of the prompted texts (prompt tokens pooled or not, as the encoder says): computed
    for an encoder with a projection head, reused by any encoder of the same backbone; None for a head-less encoder
    when no such entry exists (it caches its vectors alone: features would double the disk for nothing)."""
    if not hasattr(encoder, "apply_head"):
        return None
    model_fp = encoder.fingerprint(head=False)
    key = cache.key(model_fp, texts, prompt)
    if getattr(encoder, "projection", None) is None and not cache.path(key).exists():
        return None
    describe = {"model": encoder.describe(), "model_fingerprint": model_fp, "kind": f"{kind} features"}

    def compute() -> np.ndarray:
        return encoder.encode(list(texts), batch_size=batch_size, prompt=prompt, head=False, desc=f"{kind} features")

    return cache.get_or_compute(key, len(texts), compute, describe={**describe, "n_texts": len(texts)})
