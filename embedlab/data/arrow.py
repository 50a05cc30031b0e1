"""Training sources as memory-mapped Arrow files (Hugging Face `datasets`), built once per content fingerprint.

Why: a Python list of examples costs ~1 KB of anonymous memory per example, so a 50M-pair mixture cannot start.
Here rows are validated (`embedlab.data.rows`), written through `datasets`' `ArrowWriter` a batch at a time, and
read back with `Dataset.from_file`, which memory-maps the file: its pages are file-backed (`RssFile`, reclaimable),
and an example is read by position only when a batch asks for it. A source's cache entry is
`<embedlab cache>/datasets/<fingerprint>/` (data.arrow + meta.json); the fingerprint covers the files' bytes, the
reader's settings and this module's row layout. The entry is written in a temporary folder and renamed into
place once complete, so a killed build never leaves a half-written cache.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.data.records import content_fingerprint, hub_fingerprint, read_hub, read_records, shards
from embedlab.data.rows import STORAGE, RowSpec, row_iter
from embedlab.data.training import Example, PairExample, ScoredExample, TextExample, read_pairs, read_texts
from embedlab.errors import ConfigError, DataFormatError
from embedlab.hub import cache_dir
from embedlab.io import atomic_path, fingerprint

log = logging.getLogger(__name__)

LAYOUT_VERSION = 2  # bump when a row layout changes: old cache entries are then never read
HUB_PREFIX = "hub:"  # `path: hub:<owner>/<name>` names a hub dataset (streamed once, online)
BAD_ROWS = ("error", "skip")
SHOWN = 5  # malformed rows named one by one in the log under on_bad_row=skip; the rest are counted


def features(storage: str):
    from datasets import Features, Sequence, Value

    s, texts = Value("string"), Sequence(Value("string"))
    columns = {
        "text": {"id": s, "text": s},
        "pair": {"query_id": s, "query": s, "positive_id": s, "positive": s, "negative_ids": texts, "negatives": texts},
        "scored": {
            "query_id": s,
            "query": s,
            "candidate_ids": texts,
            "candidates": texts,
            "scores": Sequence(Value("float64")),
        },
        "labelled": {"id": s, "text": s, "label": s},
    }[storage]
    return Features({**columns, "length": Value("int32")})  # characters of the query: the length-grouping key


def query_text(row: dict[str, Any]) -> str:
    return row["text"] if "text" in row else row["query"]


class ArrowSource:
    """One training source: `len`, examples by position (`examples`), query lengths by position (`lengths`)."""

    def __init__(self, spec: RowSpec, folder: Path) -> None:
        from datasets import Dataset

        self.spec, self.folder = spec, folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.dataset = Dataset.from_file(str(folder / "data.arrow"))  # memory-mapped, nothing read yet
        self.storage = STORAGE[spec.kind]
        partner = folder / "partner.npy"  # clustering: each row's positive, another row of its cluster
        self.partner = np.load(partner, mmap_mode="r") if partner.is_file() else None

    def __len__(self) -> int:
        return self.dataset.num_rows

    def lengths(self, positions: np.ndarray) -> np.ndarray:
        """Query lengths (characters) at `positions`, read from the mapped column (only those pages)."""
        out = np.empty(len(positions), dtype=np.int64)
        for here, values in take_chunked(self.dataset.data.column("length"), positions):
            out[here] = values.to_numpy()
        return out

    def texts(self) -> TextColumn:
        """The query texts (a texts source's raw texts) by position, read from the mapped column on demand."""
        return TextColumn(self.dataset.data.column("query" if self.storage in ("pair", "scored") else "text"))

    def ids(self) -> TextColumn:
        """A texts source's ids ("<entry name>:<id>"), by position."""
        return TextColumn(self.dataset.data.column("id"))

    def examples(self, positions: Sequence[int]) -> list[Example]:
        rows = self._rows(positions)
        if self.partner is None:
            return [self._example(r) for r in rows]
        partners = self._rows(self.partner[np.asarray(positions, dtype=np.int64)])
        return [self._clustered(r, p) for r, p in zip(rows, partners, strict=True)]

    def _rows(self, positions) -> list[dict[str, Any]]:
        columns = self.dataset[[int(p) for p in positions]]
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]

    def _clustered(self, r: dict[str, Any], partner: dict[str, Any]) -> Example:
        """Clustering: another text of the cluster is the positive (a cluster's id is often no text at all); texts
        of one cluster are never each other's negatives (the label mask). A cluster of one: its name."""
        if partner["id"] == r["id"]:
            return self._example(r)
        return PairExample(r["id"], r["text"], partner["id"], partner["text"], label=r["label"])

    def _example(self, r: dict[str, Any]) -> Example:
        if self.storage == "text":
            return TextExample(r["id"], r["text"])
        if self.storage == "pair":
            return PairExample(
                r["query_id"],
                r["query"],
                r["positive_id"],
                r["positive"],
                tuple(r["negative_ids"]),
                tuple(r["negatives"]),
            )
        if self.storage == "scored":
            return ScoredExample(
                r["query_id"], r["query"], tuple(r["candidate_ids"]), tuple(r["candidates"]), tuple(r["scores"])
            )
        # classification: the label's name is the positive; same-label rows are masked (collate)
        label_id = f"{self.spec.name}:label:{r['label']}"
        return PairExample(r["id"], r["text"], label_id, r["label"], label=r["label"])


class TextColumn(Sequence[str]):
    """A string column of a memory-mapped Arrow file as a read-only sequence: what the embedding cache fingerprints,
    sorts by length and encodes a shard at a time (`take`), without a Python list of every text. Iterating reads
    `CHUNK` rows at a time, so a fingerprint over it equals the fingerprint over the same texts as a list."""

    CHUNK = 8192

    def __init__(self, column) -> None:
        self.column = column  # a pyarrow ChunkedArray over the mapped file
        self.starts = np.cumsum([0, *(len(c) for c in column.chunks)])  # each chunk's first row (`take_chunked`)

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return self.column.slice(start, max(stop - start, 0)).to_pylist()
            return self.take(np.arange(start, stop, step))
        if not -len(self) <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        return self.column[int(index) % len(self)].as_py()

    def take(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The texts at `rows`, gathered chunk by chunk (`take_chunked`)."""
        out: list[str] = [""] * len(rows)
        for here, values in take_chunked(self.column, rows, self.starts):
            for i, text in zip(here, values.to_pylist(), strict=True):
                out[i] = text
        return out

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), self.CHUNK):
            yield from self[start : start + self.CHUNK]


def take_chunked(column, rows, starts: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, Any]]:
    """The values at `rows` of a chunked Arrow column as (their places in `rows`, an Arrow array), one gather per
    chunk. A ChunkedArray's own `take` first copies the whole column into memory (38 MiB per call for 10M int32
    lengths, 15 MiB for 100k short texts); these gathers come from the system allocator, which gives them back once
    converted, where Arrow's default pool (mimalloc) keeps them and RssAnon creeps up with every call."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if starts is None:
        starts = np.cumsum([0, *(len(c) for c in column.chunks)])
    rows = np.asarray(rows, dtype=np.int64)
    chunk = np.searchsorted(starts, rows, side="right") - 1
    by_chunk = np.argsort(chunk, kind="stable")
    found, first = np.unique(chunk[by_chunk], return_index=True)
    for c, a, b in zip(found, first, np.r_[first[1:], len(rows)][: len(first)], strict=True):
        here = by_chunk[a:b]
        yield here, pc.take(column.chunk(int(c)), rows[here] - starts[c], memory_pool=pa.system_memory_pool())


def open_source(
    spec: RowSpec,
    path: str,
    *,
    root: str | Path | None = None,
    subset: str | None = None,
    on_bad_row: str = "error",
    cache: Path | None = None,
) -> ArrowSource:
    """The source's Arrow file, built now if its fingerprint is not cached yet."""
    from embedlab.data.tasks import resolve_data_path

    if on_bad_row not in BAD_ROWS:
        raise ConfigError(f"data.on_bad_row must be one of {BAD_ROWS}, got {on_bad_row!r}")
    if path.startswith(HUB_PREFIX):
        name, split = path.removeprefix(HUB_PREFIX), spec.split or "train"
        content, records = hub_fingerprint(name, subset, split), lambda: read_hub(name, subset, split)
        location = path
    else:
        local = resolve_data_path(path, root)
        content, location = content_fingerprint(shards(local)), str(local)
        records = (lambda: None) if spec.format == "beir" else (lambda: read_records(local))
    key = fingerprint(["embedlab-arrow", LAYOUT_VERSION, asdict(spec), on_bad_row, content])
    folder = (cache or cache_dir() / "datasets") / key[:32]
    if not (folder / "meta.json").is_file():
        rows = _beir_rows(spec, Path(location)) if spec.format == "beir" else _checked(spec, records(), on_bad_row)
        _build(spec, rows, folder, location)
    source = ArrowSource(spec, folder)
    if source.meta["bad_rows"]:
        log.warning("%s: %d malformed rows skipped (on_bad_row=skip)", spec.name, source.meta["bad_rows"])
    return source


def _checked(spec: RowSpec, records, on_bad_row: str) -> Iterator[dict]:
    """Rows of every good record; a bad one raises (error) or is counted (skip) — the count is yielded last."""
    bad = 0
    for _, rows in row_iter(spec, records):
        if isinstance(rows, DataFormatError):
            if on_bad_row == "error":
                raise rows
            bad += 1
            if bad <= SHOWN:
                log.warning("skipped a malformed row: %s", rows)
            continue
        yield from rows or ()
    yield {"bad_rows": bad}


def _beir_rows(spec: RowSpec, path: Path) -> Iterator[dict]:
    """The staged BEIR data through the existing readers (validated whole, small): a folder's corpus as texts, its
    qrels' (query, relevant document) pairs, or a generated-query JSONL file as pairs."""
    if spec.kind == "texts":
        for e in read_texts({"name": spec.name, "type": "beir_corpus", "path": str(path)}):
            yield {"id": e.id, "text": e.text}
    elif spec.kind == "pairs":
        for e in read_pairs(path, spec.split or "train"):
            ids = (f"{spec.name}:{e.query_id}", f"{spec.name}:{e.positive_id}")
            yield {
                "query_id": ids[0],
                "query": e.query,
                "positive_id": ids[1],
                "positive": e.positive,
                "negative_ids": [],
                "negatives": [],
            }
    else:
        raise ConfigError(f"data.mixture entry '{spec.name}': format beir reads kind texts or pairs")
    yield {"bad_rows": 0}


def cluster_partners(arrow_file: Path) -> np.ndarray:
    """Row k's partner: the next row of its cluster in file order (the last one wraps to the first), so every row
    is some row's positive. Computed once at build time (one integer per row); read memory-mapped afterwards."""
    import pyarrow.compute as pc
    from datasets import Dataset

    labels = Dataset.from_file(str(arrow_file)).data.column("label").combine_chunks()
    codes = pc.dictionary_encode(labels).indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    n, ranks = len(order), np.arange(len(order))
    starts = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]
    sizes = np.diff(np.r_[starts, n])
    start_of, end_of = np.repeat(starts, sizes), np.repeat(starts + sizes, sizes)
    nxt = np.where(ranks + 1 < end_of, ranks + 1, start_of)
    partner = np.empty(n, dtype=np.int64)
    partner[order] = order[nxt]
    return partner


def _build(spec: RowSpec, rows: Iterator[dict], folder: Path, location: str) -> None:
    from datasets.arrow_writer import ArrowWriter

    count, bad = 0, 0
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        writer = ArrowWriter(
            features=features(STORAGE[spec.kind]), path=str(tmp / "data.arrow"), writer_batch_size=1000
        )
        try:
            for row in rows:
                if "bad_rows" in row and len(row) == 1:
                    bad = row["bad_rows"]
                    continue
                writer.write({**row, "length": len(query_text(row))})
                count += 1
            writer.finalize()
        finally:
            writer.close()
        if spec.kind == "clustering" and count:
            np.save(tmp / "partner.npy", cluster_partners(tmp / "data.arrow"))
        if not count:
            raise ConfigError(f"data.mixture entry '{spec.name}': no rows in {location} ({bad} malformed)")
        meta = {"name": spec.name, "source": location, "rows": count, "bad_rows": bad, "spec": asdict(spec)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("%s: %d rows written to %s", spec.name, count, folder)
