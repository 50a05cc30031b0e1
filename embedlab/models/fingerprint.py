"""What identifies a model's vectors: its weights and the tokenizer that feeds it (for caches, exports, manifests)."""

from __future__ import annotations

import hashlib
import json

import torch


def hash_weights(module: torch.nn.Module, skip_prefix: str | None = None):
    """A sha256 object fed with every tensor of `module`'s state dict (names and bytes, sorted by name)."""
    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        if skip_prefix and key.startswith(skip_prefix):
            continue
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h


def tokenizer_digest(tokenizer) -> str:
    """sha256 of what decides a tokenizer's ids: vocabulary, merges, normaliser, pre-tokeniser, special and added
    tokens. Its size alone would let a lower-casing and a cased tokenizer of one vocabulary share cache entries."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        for transient in ("truncation", "padding"):  # per-call settings the tokenizer keeps from its last call
            spec.pop(transient, None)
    else:
        spec = {"vocab": sorted(tokenizer.get_vocab().items()), "init": repr(sorted(tokenizer.init_kwargs.items()))}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
