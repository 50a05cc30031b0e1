"""Cross-device negatives: every query sees every document of the global batch, whatever the loss.

With data parallelism each device embeds its own shard of B examples. `gather_embeddings` all-gathers every field
of the `Embeddings` record (W·B rows, rank-major) and rebuilds the in-batch document mask from the gathered ids, so
duplicate documents are masked across devices too. The local shard keeps its autograd graph; the other shards are
constants.

Every device then computes the same global loss L over all W·B queries (the similarity matrices are tiny next to
the encoder). Device r's backward yields ∂L/∂θ through its own shard only; DDP averages over devices, so the loss is
scaled by W before backward and the averaged gradient equals the full-batch gradient ∂L/∂θ exactly — no per-rank
label offsets, no loss-specific code: any loss of the zoo (and Matryoshka around it) works unchanged.
"""

from __future__ import annotations

from dataclasses import fields, replace

import torch
import torch.distributed as dist

from embedlab.data.batch import DOCUMENT_KEYS, LABEL_KEYS, QUERY_KEYS
from embedlab.data.collate import in_batch_mask
from embedlab.losses import Embeddings


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """[B, ...] on each of W devices → [W·B, ...] in rank order; this device's block keeps its gradient.

    Shards must have the same shape (the sharded batch sampler guarantees equal per-device batches)."""
    rank, size = world()
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts)


def gather_embeddings(emb: Embeddings, batch: dict) -> Embeddings:
    """The record of the whole global batch; `batch` supplies the id keys the document mask is rebuilt from."""
    if world()[1] == 1:
        return emb
    gathered = {
        f.name: all_gather_rows(value)
        for f in fields(emb)
        if f.name != "document_mask" and isinstance(value := getattr(emb, f.name), torch.Tensor)
    }
    if emb.document_mask is not None:
        b = batch[QUERY_KEYS].shape[0]
        keys = batch[DOCUMENT_KEYS]
        pool = torch.cat([all_gather_rows(keys[:b]), all_gather_rows(keys[b:])])  # positives, then negatives
        queries = all_gather_rows(batch[QUERY_KEYS])
        labels = all_gather_rows(batch[LABEL_KEYS]) if LABEL_KEYS in batch else None
        gathered["document_mask"] = in_batch_mask(queries, pool, labels).to(emb.document_mask.device)
    return replace(emb, **gathered)
