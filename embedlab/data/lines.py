"""Located reading of line-oriented data files: decoded lines (plain or gzip), JSON objects, checked fields.

Every reader of a JSONL file goes through here, so each one reports bad bytes, bad JSON and bad fields the same
way: one `DataFormatError` naming the file, the 1-based line and the field.
"""

from __future__ import annotations

import codecs
import gzip
import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedlab.errors import ConfigError, DataFormatError

_WIDE_BOMS = {  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


def decode(path: Path, first_line: int, raw: bytes) -> str:
    """`raw` (one line, or a whole file starting at `first_line`) as UTF-8 text without a leading byte-order mark;
    other encodings are a DataFormatError on the exact line, with the fix when the encoding is recognisable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        wide = next((name for bom, name in _WIDE_BOMS.items() if raw.startswith(bom)), None)
        problem = (
            f"not UTF-8 but {wide} text; convert it (iconv -f {wide} -t UTF-8)"
            if wide and first_line == 1
            else f"not valid UTF-8 ({e.reason}; a latin-1 or cp1252 file? convert it to UTF-8)"
        )
        raise DataFormatError(path, first_line + raw[: e.start].count(b"\n"), None, problem) from None
    if "\x00" in text:  # valid UTF-8, but no text file has NULs: UTF-16 without a byte-order mark does
        line = first_line + raw[: raw.index(b"\0")].count(b"\n")
        raise DataFormatError(path, line, None, "NUL bytes (UTF-16 text? convert it: iconv -f UTF-16 -t UTF-8)")
    return text.removeprefix("\ufeff") if first_line == 1 else text


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line); bad bytes or a truncated gzip become a located error.

    A `.gz` suffix means gzip. A UTF-8 byte-order mark on the first line is dropped."""
    # Decoding line by line (not through a buffered text stream) keeps the reported line number exact.
    lineno = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                yield lineno, decode(path, lineno, raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataFormatError(path, lineno + 1, None, f"corrupt or truncated gzip data ({e})") from e


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; a malformed line is one DataFormatError naming file and line."""
    if not path.is_file():
        raise ConfigError(f"{path} not found")
    for lineno, line in read_lines(path):
        if not line.strip():
            continue  # a trailing blank line is not a record
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, lineno, None, f"invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:  # thousands of nested brackets
            raise DataFormatError(path, lineno, None, "invalid JSON (nested too deeply)") from None
        if not isinstance(rec, dict):
            raise DataFormatError(path, lineno, None, f"expected a JSON object, got {type(rec).__name__}")
        yield lineno, rec


def string(path: Path, line: int, field: str, value: Any, *, empty_ok: bool = False) -> str:
    """`value` as a string that tokenizers and UTF-8 writers accept; blank only when `empty_ok`."""
    if not isinstance(value, str):
        raise DataFormatError(path, line, field, f"missing or not a string: {_kind(value)}")
    if not empty_ok and not value.strip():
        raise DataFormatError(path, line, field, "empty or whitespace-only text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows "\ud800"; no tokenizer or UTF-8 file does
        raise DataFormatError(path, line, field, "contains an unpaired UTF-16 surrogate escape") from None
    return value


def identifier(path: Path, line: int, field: str, value: Any) -> str:
    """An id: a non-blank string, or an integer (JSON files written by hand often number their records)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return string(path, line, field, value)


def strings(path: Path, line: int, field: str, value: Any, *, min_len: int = 0) -> list[str]:
    """A JSON list of non-blank strings (ids or texts), at least `min_len` long."""
    if not isinstance(value, list):
        raise DataFormatError(path, line, field, f"missing or not a list: {_kind(value)}")
    if len(value) < min_len:
        raise DataFormatError(path, line, field, f"needs at least {min_len} entries, has {len(value)}")
    return [string(path, line, f"{field}[{i}]", v) for i, v in enumerate(value)]


def numbers(path: Path, line: int, field: str, value: Any) -> list[float]:
    """A JSON list of finite numbers (JSON's NaN/Infinity extensions and booleans refused)."""
    if not isinstance(value, list):
        raise DataFormatError(path, line, field, f"missing or not a list: {_kind(value)}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise DataFormatError(path, line, f"{field}[{i}]", f"not a finite number: {v!r:.40}")
        out.append(float(v))
    return out


def first_seen(seen: dict[str, int], path: Path, line: int, field: str, key: str) -> None:
    """Record `key` at `line`; a key seen before is a DataFormatError naming both lines."""
    if key in seen:
        raise DataFormatError(path, line, field, f"duplicate {key!r:.80} (first on line {seen[key]})")
    seen[key] = line


def _kind(value: Any) -> str:
    return "null or absent" if value is None else type(value).__name__
