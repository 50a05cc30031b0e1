"""Raw records of a training-data source, one at a time, each with where it came from: JSONL(.gz), Parquet and CSV
files, folders of such shards, and Hugging Face hub datasets.

Why its own reader: a malformed line must become a located, *recoverable* error (file, line, field) so that
`data.on_bad_row=skip` can count it and go on; a reader that raises from inside a generator (or from inside Arrow)
cannot be resumed after the bad line. A record that cannot be read is therefore yielded as its `DataFormatError`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedlab.data.lines import decode
from embedlab.errors import ConfigError, DataFormatError
from embedlab.io import fingerprint, sha256_file

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet", ".csv", ".tsv")  # what a folder of shards may hold


@dataclass(frozen=True)
class Record:
    path: Path  # the file (or hub id) it came from
    line: int  # 1-based line of a JSONL/CSV file, 1-based row of a Parquet file or hub split
    value: dict[str, Any] | DataFormatError  # the record, or why it could not be read


def shards(path: Path) -> list[Path]:
    """The data files of a source: the file itself, or a folder's supported files in name order."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
        if not files:
            raise ConfigError(f"{path}: no data files ({', '.join(SUFFIXES)}) in this folder")
        return files
    raise ConfigError(f"{path} not found")


def content_fingerprint(files: list[Path]) -> str:
    """Over every shard's name and bytes: a changed, added or renamed shard is a new dataset."""
    return fingerprint(part for f in files for part in (f.name, sha256_file(f)))


def read_records(path: Path) -> Iterator[Record]:
    """Every record of every shard, in order."""
    for file in shards(path):
        name = file.name
        if name.endswith((".jsonl", ".jsonl.gz")):
            yield from _jsonl(file)
        elif name.endswith(".parquet"):
            yield from _parquet(file)
        elif name.endswith((".csv", ".tsv")):
            yield from _csv(file, "\t" if name.endswith(".tsv") else ",")
        else:
            raise ConfigError(f"{file}: unsupported data file (expected one of {', '.join(SUFFIXES)})")


def _jsonl(path: Path) -> Iterator[Record]:
    lineno = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue  # a blank line is not a record
                try:
                    rec = json.loads(decode(path, lineno, raw))
                except DataFormatError as e:
                    yield Record(path, lineno, e)
                    continue
                except json.JSONDecodeError as e:
                    yield Record(path, lineno, DataFormatError(path, lineno, None, f"invalid JSON ({e.msg})"))
                    continue
                except RecursionError:
                    yield Record(path, lineno, DataFormatError(path, lineno, None, "invalid JSON (nested too deeply)"))
                    continue
                if not isinstance(rec, dict):
                    problem = f"expected a JSON object, got {type(rec).__name__}"
                    rec = DataFormatError(path, lineno, None, problem)
                yield Record(path, lineno, rec)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # the rest of the file is unreadable: not skippable
        raise DataFormatError(path, lineno + 1, None, f"corrupt or truncated gzip data ({e})") from e


def _parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):  # a batch at a time: memory stays flat
        for rec in batch.to_pylist():
            row += 1
            yield Record(path, row, rec)


def _csv(path: Path, delimiter: str) -> Iterator[Record]:
    with open(path, "rb") as f:
        text = io.TextIOWrapper(f, encoding="utf-8", errors="strict", newline="")
        reader = csv.DictReader(text, delimiter=delimiter, strict=True)
        try:
            header = reader.fieldnames or []
            for rec in reader:
                line = reader.line_num
                if None in rec:
                    problem = f"{len(header) + len(rec[None])} fields, header has {len(header)}"
                    yield Record(path, line, DataFormatError(path, line, "columns", problem))
                elif any(v is None for v in rec.values()):
                    yield Record(path, line, DataFormatError(path, line, "columns", "row too short"))
                else:
                    yield Record(path, line, rec)
        except (csv.Error, UnicodeDecodeError) as e:  # the reader cannot go on past a broken quote or byte
            raise DataFormatError(path, reader.line_num + 1, None, f"malformed CSV ({e})") from e


def read_hub(name: str, subset: str | None, split: str) -> Iterator[Record]:
    """A hub dataset, streamed (needs network): records in the split's order."""
    import datasets

    stream = datasets.load_dataset(name, subset, split=split, streaming=True)
    for row, rec in enumerate(stream, start=1):
        yield Record(Path(name), row, dict(rec))


def hub_fingerprint(name: str, subset: str | None, split: str) -> str:
    """A hub dataset is named by its repository's current commit (asked once, online)."""
    from huggingface_hub import HfApi

    sha = HfApi().dataset_info(name).sha
    return fingerprint(["hub", name, subset, split, sha])
