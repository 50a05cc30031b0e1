"""Teacher embeddings for a training text set: computed once by a frozen teacher (and cached), or read from a file.

Rows follow the training set's order, so a batch looks its targets up by example index. The cached matrix is
memory-mapped; a changed teacher, text, max length or prompt gives a new cache key (see `EmbeddingCache`).
A black-box teacher (e.g. an embedding API) is a file of vectors keyed by text id: `.npz` with arrays `ids` and
`embeddings`, or JSONL lines {"id": ..., "embedding": [...]}.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from embedlab.data.training import read_jsonl
from embedlab.errors import ConfigError, DataFormatError
from embedlab.eval.cache import EmbeddingCache, encode_cached


class TeacherTable:
    def __init__(self, embeddings: np.ndarray, source: str) -> None:
        self.embeddings, self.source = embeddings, source

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.embeddings[rows.cpu().numpy()], dtype=np.float32))

    @classmethod
    def from_encoder(
        cls, teacher, groups: Sequence[Sequence[str]], cache: EmbeddingCache | None, batch_size: int = 64
    ) -> TeacherTable:
        """Rows for each group of texts (one per training source), in order. Cached per group, so a source that is
        also an evaluation corpus (the SciFact abstracts) is encoded by the teacher once for both uses."""
        parts = [encode_cached(teacher, list(g), kind="document", cache=cache, batch_size=batch_size) for g in groups]
        return cls(np.concatenate(parts) if len(parts) > 1 else parts[0], f"teacher {teacher.name}")

    @classmethod
    def from_file(cls, path: str | Path, ids: Sequence[str]) -> TeacherTable:
        """Vectors for `ids` (the training texts' ids, in order) from a black-box teacher's file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"teacher embeddings file {path} not found")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if "ids" not in f or "embeddings" not in f:
                    raise DataFormatError(path, None, "ids/embeddings", "an .npz teacher file needs both arrays")
                table = dict(zip((str(i) for i in f["ids"]), f["embeddings"], strict=True))
        else:
            table = {}
            for lineno, rec in read_jsonl(path):
                try:
                    table[str(rec["id"])] = np.asarray(rec["embedding"], dtype=np.float32)
                except (KeyError, TypeError, ValueError) as e:
                    raise DataFormatError(path, lineno, "id/embedding", f"unreadable record ({e})") from None
        missing = [i for i in ids if i not in table]
        if missing:
            raise ConfigError(
                f"{path}: no teacher embedding for {len(missing)} of {len(ids)} training texts, e.g. {missing[:3]}"
            )
        matrix = np.stack([table[i] for i in ids]).astype(np.float32)
        if not np.isfinite(matrix).all():
            raise ConfigError(f"{path}: teacher embeddings contain NaN or inf")
        return cls(matrix, f"file {path}")
