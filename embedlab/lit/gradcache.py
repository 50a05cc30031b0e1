"""GradCache: contrastive batches far larger than activation memory, with the same gradient as the plain step.

Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup" (RepL4NLP 2021). The loss of
an embedding model depends on the encoder only through the embeddings, so the step splits in two:

1. `embed`: encode every group of texts (queries, documents, candidates) in chunks of at most `chunk_size` rows and
   `max_tokens` padded tokens without autograd, remembering each chunk's random-number state; hand the loss leaf
   tensors that require grad (rows in the batch's order).
2. `backward`: backpropagate the loss to those leaves only (cheap: no encoder in the graph), then re-encode chunk by
   chunk with autograd, replaying the chunk's random state (same dropout masks) and autocast setting, and push the
   cached embedding gradient through it. Only one chunk's activations are alive at a time.

The step's last chunk is the exception: `embed` encodes it with autograd and keeps its graph, and `backward` starts
from it, so a step encodes N chunks 2N - 1 times instead of 2N. Peak memory stays one chunk's graph: nothing but the
loss (on embeddings) runs while it waits, and it is freed before any other chunk is re-encoded.

Parameter gradients of all chunks are summed first and handed to autograd in one final pass, so each parameter's
gradient hook fires once per step — what DistributedDataParallel's reducer expects (calling `backward` per chunk
would all-reduce after the first chunk and fail on the second).

With a token budget (`max_tokens`, as sentence-transformers' `mini_batch_num_tokens`), the rows of a group are taken
longest first, so a chunk of short texts holds many rows and one of long texts few, and each chunk is cut to its own
longest row: the budget bounds a chunk's activations (rows × padded width), where counting unpadded tokens would not.
Without one, rows keep the batch's order and every chunk has `chunk_size` rows (earlier runs' chunks, unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from embedlab.data.batching import budget_batches
from embedlab.errors import ConfigError

Inputs = dict[str, torch.Tensor]


def row_ends(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per row, one past its last non-padding column (a row without tokens: the full width). Left-padded rows end
    at the full width: their leading padding is kept, as positions count from the first column."""
    width = attention_mask.shape[1]
    return width - attention_mask.flip(1).ne(0).int().argmax(1)  # argmax: the first maximum, i.e. the last token


def chunk_rows(attention_mask: torch.Tensor, chunk_size: int | None, max_tokens: int | None) -> list[torch.Tensor]:
    """Row indices of each chunk: at most `chunk_size` rows and `max_tokens` padded tokens (rows × the chunk's
    longest row end) each, a row over the budget alone in its chunk. With a budget, rows go longest first."""
    ends = row_ends(attention_mask)
    if max_tokens is None:
        order = torch.arange(len(ends), device=ends.device)
    else:
        order = torch.argsort(ends, descending=True, stable=True)
    ranges = budget_batches(ends[order].tolist(), chunk_size, max_tokens)
    return [order[start:end] for start, end in ranges]


def take_rows(inputs: Inputs, rows: torch.Tensor) -> Inputs:
    """These rows of a tokenized batch, cut after their last non-padding column: trailing columns that are padding
    in every row taken never reach attention, so the embeddings are unchanged and short chunks cost less."""
    width = inputs["attention_mask"].shape[1]
    keep = int(row_ends(inputs["attention_mask"][rows]).max()) if len(rows) else width
    return {k: v[rows, :keep] if v.dim() >= 2 and v.shape[1] == width else v[rows] for k, v in inputs.items()}


def chunk_inputs(inputs: Inputs, chunk_size: int | None, max_tokens: int | None = None) -> Iterator[Inputs]:
    """The chunks of a tokenized batch (`chunk_rows`), each cut to its own width (`take_rows`)."""
    for rows in chunk_rows(inputs["attention_mask"], chunk_size, max_tokens):
        yield take_rows(inputs, rows)


@dataclass
class _Chunk:
    group: str
    rows: torch.Tensor  # positions in the group's batch
    inputs: Inputs
    cpu_rng: torch.Tensor
    cuda_rng: list[torch.Tensor]


@contextmanager
def _replayed_rng(chunk: _Chunk, cuda_devices: list[int]) -> Iterator[None]:
    """The random state the chunk saw on its first pass; the global state is restored afterwards."""
    with torch.random.fork_rng(devices=cuda_devices):
        torch.set_rng_state(chunk.cpu_rng)
        for device, state in zip(cuda_devices, chunk.cuda_rng, strict=True):
            torch.cuda.set_rng_state(state, device)
        yield


class GradCache:
    """One step's cache. `embed` then `backward`, once per training step; `pending` tells whether a step is open."""

    def __init__(self, chunk_size: int | None, max_tokens: int | None = None) -> None:
        if chunk_size is None and max_tokens is None:
            raise ConfigError("GradCache needs step.chunk_size (texts per chunk) or step.chunk_tokens (tokens)")
        if chunk_size is not None and chunk_size < 1:
            raise ConfigError(f"step.chunk_size must be a positive number of texts, got {chunk_size}")
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"step.chunk_tokens must be a positive number of tokens, got {max_tokens}")
        self.chunk_size, self.max_tokens = chunk_size, max_tokens
        self._chunks: list[_Chunk] = []  # to re-encode in `backward`
        self._kept: tuple[_Chunk, torch.Tensor] | None = None  # the last chunk and its embeddings, graph attached
        self._leaves: dict[str, torch.Tensor] = {}
        self._autocast: tuple[str, bool, torch.dtype] | None = None
        self._cuda_devices: list[int] = []

    @property
    def pending(self) -> bool:
        return bool(self._leaves)

    def embed(self, encode: Callable[..., torch.Tensor], groups: dict[str, Inputs]) -> dict[str, torch.Tensor]:
        """Embeddings of every group, computed chunk-wise without autograd (but the last chunk); returned as leaves
        requiring grad."""
        self._chunks, self._kept, self._leaves = [], None, {}
        self._cuda_devices = cuda_devices = _cuda_devices(groups)
        device_type = next(iter(groups.values()))["input_ids"].device.type
        self._autocast = (device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
        plan = {
            g: chunk_rows(inputs["attention_mask"], self.chunk_size, self.max_tokens) for g, inputs in groups.items()
        }
        last_group = next(reversed(plan))
        last = (last_group, len(plan[last_group]) - 1)
        for group, inputs in groups.items():
            outputs, taken = [], []
            for i, rows in enumerate(plan[group]):
                chunk = take_rows(inputs, rows)
                cuda_rng = [torch.cuda.get_rng_state(d) for d in cuda_devices]
                record = _Chunk(group, rows, chunk, torch.get_rng_state(), cuda_rng)
                if (group, i) == last:
                    self._kept = (record, encode(**chunk))
                    outputs.append(self._kept[1].detach())
                else:
                    self._chunks.append(record)
                    with torch.no_grad():
                        outputs.append(encode(**chunk))
                taken.append(rows)
            # Back to the batch's row order (the identity without a token budget).
            inverse = torch.argsort(torch.cat(taken)).to(outputs[0].device)
            self._leaves[group] = torch.cat(outputs)[inverse].requires_grad_()
        return dict(self._leaves)

    def backward(
        self, loss: torch.Tensor, encode: Callable[..., torch.Tensor], params: list[torch.nn.Parameter]
    ) -> None:
        """Backpropagate `loss` (a function of the leaves from `embed`) into `params` through chunk re-encodings."""
        if not self.pending:
            raise RuntimeError("GradCache.backward without a preceding embed in this step")
        leaves = list(self._leaves.values())
        trainable = [p for p in params if p.requires_grad]
        # The loss graph reaches the leaves (and a trainable parameter of the loss itself, if any), not the encoder.
        grads = torch.autograd.grad(loss, leaves + trainable, allow_unused=True)
        leaf_grads = dict(zip(self._leaves, grads[: len(leaves)], strict=True))
        total: list[torch.Tensor | None] = list(grads[len(leaves) :])
        device_type, enabled, dtype = self._autocast
        kept, self._kept = self._kept, None
        if kept is not None and leaf_grads[kept[0].group] is None:
            kept = None  # the loss does not use its group: its graph goes now
        # The kept chunk first: autograd.grad frees its graph's buffers before any other chunk is re-encoded.
        for chunk, out in ([kept] if kept else []) + [(c, None) for c in self._chunks]:
            grad = leaf_grads[chunk.group]
            if grad is None:  # the loss does not use this group
                continue
            if out is None:
                with (
                    _replayed_rng(chunk, self._cuda_devices),
                    torch.autocast(device_type, dtype=dtype, enabled=enabled),
                ):
                    out = encode(**chunk.inputs)
            rows = chunk.rows.to(grad.device)
            part = torch.autograd.grad(out, trainable, grad[rows].to(out.dtype), allow_unused=True)
            total = [t if g is None else (g if t is None else t.add_(g)) for t, g in zip(total, part, strict=True)]
        # One pass through autograd per parameter: gradient hooks (DDP's all-reduce, accumulation) fire once.
        used = [(p, g) for p, g in zip(trainable, total, strict=True) if g is not None]
        if used:
            torch.autograd.backward([p for p, _ in used], [g for _, g in used])
        self._chunks, self._leaves = [], {}


def _cuda_devices(groups: dict[str, Inputs]) -> list[int]:
    devices = {v.device for inputs in groups.values() for v in inputs.values() if v.device.type == "cuda"}
    return sorted(d.index if d.index is not None else torch.cuda.current_device() for d in devices)
