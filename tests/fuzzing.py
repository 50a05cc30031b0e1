"""Hypothesis strategies that break data files the ways real files break, and the oracle every reader must pass.

A fuzzed input starts from valid records and takes one record-level mutation (a dropped or retyped field, a blank
text, a duplicated record, a huge text, an escaped lone surrogate) and one byte-level mutation (another encoding,
truncation, spliced random bytes, a deeply nested line, or random bytes outright). The oracle: the reader returns,
or raises one `DataFormatError` (file, line, field) or `ConfigError` naming the file — never another exception —
and writes nothing. `COUNTS` records how many inputs each reader was given.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from embedlab.errors import ConfigError, DataFormatError

COUNTS: Counter[str] = Counter()  # inputs per reader
VALID: Counter[str] = Counter()  # of which unbroken, and read back exactly
# Bounded and derandomised: the same inputs in CI every time; EMBEDLAB_FUZZ_EXAMPLES raises the budget locally.
FUZZ = settings(
    max_examples=int(os.environ.get("EMBEDLAB_FUZZ_EXAMPLES", "300")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Texts a valid file may hold: any Unicode scalar but NUL (controls, U+2028, emoji included), one non-space at least.
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=24).filter(str.strip)
# Ids: no whitespace at all (qrels cells are stripped, so " a" in queries.jsonl and "a" in qrels would differ).
ids = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
HUGE = "word " * 60_000  # 300k characters: past csv's field limit, far past any tokenizer's max length
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252")


@st.composite
def mutate_records(draw, records: list[dict], text_keys: tuple[str, ...]) -> list[dict]:
    """One record-level mutation (or none) of JSON records."""
    records = [dict(r) for r in records]
    kind = draw(st.sampled_from(["none", "drop", "retype", "blank", "duplicate", "huge", "surrogate", "extra"]))
    if kind == "none" or not records:
        return records
    rec = draw(st.sampled_from(records))
    key = draw(st.sampled_from(sorted(rec)))
    text_key = draw(st.sampled_from(text_keys)) if text_keys else key
    if kind == "drop":
        del rec[key]
    elif kind == "retype":
        rec[key] = draw(json_values)
    elif kind == "blank":
        rec[text_key] = draw(st.sampled_from(["", " ", "\t\n", "\u3000"]))
    elif kind == "duplicate":
        records.append(dict(rec))
    elif kind == "huge":
        rec[text_key] = HUGE
    elif kind == "surrogate":
        rec[text_key] = "x\ud800y"
    else:
        rec[draw(st.text(max_size=6))] = draw(json_values)
    return records


def jsonl_text(records: list[dict], ascii_only: bool) -> str:
    return "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records)


@st.composite
def mutate_bytes(draw, text: str) -> bytes:
    """The file's bytes: `text` encoded (usually as UTF-8), then one byte-level mutation (or none)."""
    encoding = draw(st.sampled_from(ENCODINGS[:1] * 6 + ENCODINGS[1:]))
    errors = "surrogatepass" if encoding.startswith("utf") else "replace"
    data = text.encode(encoding, errors=errors)
    kind = draw(st.sampled_from(["none", "none", "truncate", "splice", "nested", "random"]))
    at = draw(st.integers(0, len(data)))
    if kind == "truncate":
        data = data[:at]
    elif kind == "splice":
        data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    elif kind == "nested":
        data += b"[" * 20_000 + b"\n"
    elif kind == "random":
        data = draw(st.binary(max_size=200))
    return data


@st.composite
def gzipped(draw, data: bytes) -> tuple[bytes, bool]:
    """(gzip of `data`, intact): possibly cut short or with one byte flipped (a bad CRC or a broken stream)."""
    packed = gzip.compress(data, mtime=0)
    kind = draw(st.sampled_from(["none", "truncate", "flip"]))
    at = draw(st.integers(0, len(packed) - 1))
    if kind == "truncate":
        return packed[:at], False
    if kind == "flip":
        return packed[:at] + bytes([packed[at] ^ draw(st.integers(1, 255))]) + packed[at + 1 :], False
    return packed, True


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is one folder per test, shared by all examples)."""
    with tempfile.TemporaryDirectory(prefix="embedlab-fuzz-") as d:
        yield Path(d)


def listing(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def run_reader(
    reader: str, call: Callable[[], Any], inputs: list[Path], folder: Path, expect: Callable[[Any], bool] | None = None
) -> Any:
    """The oracle: `call()`'s result, or None after one located DataFormatError / ConfigError naming an input.

    `expect`, given for an unbroken input, must hold for the result (which must then exist)."""
    COUNTS[reader] += 1
    before = listing(folder)
    try:
        result = call()
    except DataFormatError as e:
        assert expect is None, f"a valid file was refused: {e}"
        assert e.path in inputs, f"{e.path} is not one of the inputs {inputs}"
        assert e.line is None or 1 <= e.line <= line_count(e.path) + 1, (e.line, line_count(e.path))
        assert e.problem and "\n" not in str(e), repr(str(e))  # one line, as the CLIs print it
        return None
    except ConfigError as e:  # e.g. "no pairs for split 'test'": about a file, or a folder, as a whole
        assert expect is None, f"a valid file was refused: {e}"
        assert any(str(p) in str(e) or str(p.parent) in str(e) for p in inputs), str(e)
        return None
    finally:
        assert listing(folder) == before, "a reader wrote a file"
    if expect is not None:
        VALID[reader] += 1
        assert expect(result), f"a valid file read wrong: {result!r:.300}"
    return result


def line_count(path: Path) -> int:
    if path.suffix != ".gz":
        return path.read_bytes().count(b"\n") + 1
    n = 0
    with contextlib.suppress(Exception), gzip.open(path, "rb") as f:  # a corrupt stream: the lines before it
        for _ in f:
            n += 1
    return n + 1


def report(path: str | None) -> None:
    """Write the per-reader counts as JSON (for the closing note) when asked, and show them with `pytest -s`."""
    counts = {reader: {"inputs": n, "valid": VALID[reader]} for reader, n in sorted(COUNTS.items())}
    if path:
        Path(path).write_text(json.dumps(counts, indent=2) + "\n")
    print("\nfuzzed inputs per reader (valid ones read back exactly):", counts)
