"""Teacher embeddings for a training text set: computed once by a frozen teacher (and cached), or read from a file.

Rows follow the training set's order, so a batch looks its targets up by example index. The cached table is one
memory-mapped entry per source (sharded when large, see `embedlab.eval.shards`), looked up through their offsets and
never concatenated: a table larger than RAM is read a batch's rows at a time. A changed teacher, text or max length
gives a new cache key (see `EmbeddingCache`).
`teacher_targets` is the one rule for a teacher's targets, cached (`teacher.cache=true`) or online. A mixture's
table (`spanning`) covers its texts datasets, each embedded straight from its Arrow column (no list of its texts).
A black-box teacher (e.g. an embedding API) is a file of vectors keyed by text id: `.npz` with arrays `ids` and
`embeddings`, or JSONL lines {"id": ..., "embedding": [...]}.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from embedlab.data.lines import first_seen, identifier, numbers, read_jsonl
from embedlab.errors import ConfigError, DataFormatError
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.shards import RowStack


def check_teacher_size(
    student_dim: int | None, teacher_dim: int | None, teacher: str = "the teacher", student: str = "the student"
) -> None:
    """The one teacher/student size rule (LEAF regresses the student onto the teacher's vectors): equal sizes, else
    the projection that makes them so. Unknown sizes (None) pass: a later caller knows them."""
    if student_dim is not None and teacher_dim is not None and student_dim != teacher_dim:
        raise ConfigError(
            f"{teacher} embeds in {teacher_dim} dims, {student} in {student_dim}: the student needs a projection: "
            f"set model.projection_dim={teacher_dim} (the teacher's size)"
        )


def teacher_targets(teacher, texts: Sequence[str], batch_size: int, cache: EmbeddingCache | None = None) -> np.ndarray:
    """The teacher's targets for training texts: the raw texts, with no prompt, cached or online alike.

    LEAF (Vujanić & Rueckstiess 2025) aligns the student to the teacher on the same input text, and the student's
    distillation texts carry no prompt (see `Collator._texts`); a teacher's document prompt would make the targets
    vectors of a different string. Without a document prompt the cache entry is the teacher's evaluation-corpus one."""
    return encode_cached(teacher, texts, kind="text", cache=cache, batch_size=batch_size)


class TeacherTable:
    def __init__(self, embeddings: np.ndarray | RowStack, source: str) -> None:
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
        """Rows for each group of texts (one per training source), in order (`teacher_targets`). Cached per group,
        so a source that is also an evaluation corpus (the SciFact abstracts) is encoded by the teacher once for both
        uses when the teacher has no document prompt."""
        parts = [teacher_targets(teacher, g, batch_size, cache) for g in groups]
        return cls(RowStack(parts) if len(parts) > 1 else parts[0], f"teacher {teacher.name}")

    @classmethod
    def spanning(
        cls, tables: Sequence[np.ndarray | RowStack | None], sizes: Sequence[int], source: str
    ) -> TeacherTable:
        """One table over a mixture's rows (dataset d's row i is row `sizes[0] + … + sizes[d-1] + i`, as in its
        batches' `index`): each texts dataset's table as it is (memory-mapped, never copied), every other dataset's
        rows NaN in a zero-stride view that holds no memory. Those datasets' batches carry no teacher targets; a row
        looked up there by mistake makes the loss non-finite instead of training on another text's vector."""
        dim = next(int(t.shape[1]) for t in tables if t is not None)
        for d, (t, n) in enumerate(zip(tables, sizes, strict=True)):
            if t is not None and len(t) != n:
                raise ValueError(f"dataset {d}: a teacher table of {len(t)} rows for {n} examples")
        nan = np.float32(np.nan)
        parts = [np.broadcast_to(nan, (n, dim)) if t is None else t for t, n in zip(tables, sizes, strict=True)]
        return cls(RowStack(parts), source)

    @classmethod
    def from_file(cls, path: str | Path, ids: Sequence[str]) -> TeacherTable:
        """Vectors for `ids` (the training texts' ids, in order) from a black-box teacher's file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"teacher embeddings file {path} not found")
        table = _read_npz(path) if path.suffix == ".npz" else _read_jsonl_vectors(path)
        missing = [i for i in ids if i not in table]
        if missing:
            raise ConfigError(
                f"{path}: no teacher embedding for {len(missing)} of {len(ids)} training texts, e.g. {missing[:3]}"
            )
        matrix = np.stack([table[i] for i in ids]).astype(np.float32)
        bad = ~np.isfinite(matrix).all(1)  # only the rows used matter
        if bad.any():
            example = ids[int(bad.argmax())]
            raise DataFormatError(path, None, "embeddings", f"NaN or inf in {int(bad.sum())} vectors, e.g. {example!r}")
        return cls(matrix, f"file {path}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """id -> vector from arrays `ids` [N] and `embeddings` [N, D] (numbers only: pickled objects are refused)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in ("ids", "embeddings") if name in f}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataFormatError(path, None, None, f"not a readable .npz of plain arrays ({e})") from None
    if len(arrays) < 2:
        raise DataFormatError(path, None, "ids/embeddings", "an .npz teacher file needs both arrays")
    ids, emb = arrays["ids"], arrays["embeddings"]
    if ids.ndim != 1 or emb.ndim != 2 or len(ids) != len(emb) or not emb.shape[1]:
        raise DataFormatError(path, None, "embeddings", f"need ids [N], embeddings [N, D]: {ids.shape}, {emb.shape}")
    if not np.issubdtype(emb.dtype, np.number):
        raise DataFormatError(path, None, "embeddings", f"not numbers (dtype {emb.dtype})")
    keys = [str(i) for i in ids]
    if len(set(keys)) < len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise DataFormatError(path, None, "ids", f"duplicate id {duplicate!r:.80}")
    return dict(zip(keys, emb, strict=True))


def _read_jsonl_vectors(path: Path) -> dict[str, np.ndarray]:
    """id -> vector from lines {"id", "embedding": [...]}, every vector of the first one's size."""
    table: dict[str, np.ndarray] = {}
    seen: dict[str, int] = {}
    for lineno, rec in read_jsonl(path):
        key = identifier(path, lineno, "id", rec.get("id"))
        first_seen(seen, path, lineno, "id", key)
        vector = numbers(path, lineno, "embedding", rec.get("embedding"))
        size = len(next(iter(table.values()))) if table else len(vector)
        if not vector or len(vector) != size:
            raise DataFormatError(path, lineno, "embedding", f"{len(vector)} numbers, expected {size or 'some'}")
        table[key] = np.asarray(vector, dtype=np.float32)
    return table
