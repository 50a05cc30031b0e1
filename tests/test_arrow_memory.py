"""Anonymous memory does not grow with the number of examples of an Arrow-backed mixture: one epoch of batches
over 20k and over 200k texts, each in a fresh process, peak RssAnon above the process's after its imports. Today's
list reader, measured the same way, grows by tens of MiB over the same files (the measurement can see growth).
bench/data_scale.py measures the same at 1M and 10M examples. The same holds for a mixture's teacher table: its
texts are read from the Arrow column a shard at a time into the sharded cache, never held as one list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
MIB = 2**20

CHILD = r"""
import json, sys
import numpy as np
from embedlab.data.arrow import open_source
from embedlab.data.batching import LengthGroupedBatchSampler
from embedlab.data.mixture import MixtureBatchSampler
from embedlab.data.rows import RowSpec
from embedlab.data.training import read_texts
from embedlab.lit.mixture import MixtureDataset, MixturePart

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

kind, files = sys.argv[1], sys.argv[2:]
base, peak, seen = anon(), 0, 0
if kind == "arrow":
    sources = [open_source(RowSpec(f"t{i}", "texts"), f) for i, f in enumerate(files)]
    sampler = MixtureBatchSampler([len(s) for s in sources], 64, lengths=[s.lengths for s in sources])
    fetch = MixtureDataset([MixturePart(s.spec.name, s, None, None) for s in sources], sampler).__getitems__
else:
    examples = [e for i, f in enumerate(files) for e in read_texts({"name": f"t{i}", "type": "jsonl", "path": f})]
    sampler = LengthGroupedBatchSampler([len(e.text) for e in examples], 64)
    fetch = lambda rows: [examples[r] for r in rows]
for i, rows in enumerate(sampler):
    seen += len(fetch(rows))
    if i % 25 == 0:
        peak = max(peak, anon())
print(json.dumps({"growth": max(peak, anon()) - base, "seen": seen}))
"""


def write_texts(folder: Path, n: int) -> list[str]:
    folder.mkdir()
    paths = []
    for part, count in enumerate((n // 2, n - n // 2)):
        path = folder / f"texts{part}.jsonl"
        words = [
            "cells",
            "proteins",
            "markets",
            "rain",
            "music",
            "code",
            "volcano",
            "senate",
            "glacier",
            "coffee",
            "whale",
            "chess",
        ]
        with open(path, "w") as f:
            for i in range(count):
                text = " ".join(words[(i * 7 + k) % len(words)] for k in range(5 + i % 20)) + f" {part}-{i}"
                f.write(json.dumps({"id": i, "text": text}) + "\n")
        paths.append(str(path))
    return paths


def measure(kind: str, files: list[str], cache: Path) -> dict:
    env = {**os.environ, "EMBEDLAB_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, *files], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_anonymous_memory_is_flat_in_the_number_of_examples(tmp_path) -> None:
    small, large = write_texts(tmp_path / "small", 20_000), write_texts(tmp_path / "large", 200_000)
    cache = tmp_path / "cache"
    for files in (small, large):  # built once here: the measured processes only open the cache
        measure("arrow", files, cache)
    arrow = {n: measure("arrow", files, cache) for n, files in ((20_000, small), (200_000, large))}
    assert arrow[20_000]["seen"] == 20_000 and arrow[200_000]["seen"] == 200_000
    grew = (arrow[200_000]["growth"] - arrow[20_000]["growth"]) / MIB
    lists = {n: measure("list", files, cache) for n, files in ((20_000, small), (200_000, large))}
    list_grew = (lists[200_000]["growth"] - lists[20_000]["growth"]) / MIB
    assert list_grew > 40, f"today's reader grew by only {list_grew:.1f} MiB: the measurement cannot see growth"
    assert grew < 12, f"RssAnon grew by {grew:.1f} MiB from 20k to 200k examples (lists: {list_grew:.1f} MiB)"


TABLE_CHILD = r"""
import json, sys, zlib
import numpy as np
import torch
from embedlab.data.arrow import open_source
from embedlab.data.rows import RowSpec
from embedlab.eval.cache import EmbeddingCache
from embedlab.lit.teacher import TeacherTable, teacher_targets

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

class Hashed:  # a frozen encoder standing in for a teacher: a cheap vector per text, the peak sampled per shard
    name, query_prompt, document_prompt, peak = "hashed", "", "", 0
    def fingerprint(self, head=True):
        return "hashed-v1"
    def describe(self):
        return {"name": self.name}
    def encode(self, texts, batch_size=32, desc=""):
        Hashed.peak = max(Hashed.peak, anon())
        return np.array([[zlib.crc32(t.encode()) % 1000, len(t)] for t in texts], dtype=np.float32)

kind, cache, files = sys.argv[1], sys.argv[2], sys.argv[3:]
sources = [open_source(RowSpec(f"t{i}", "texts"), f) for i, f in enumerate(files)]
base = anon()
columns = [s.texts() if kind == "column" else list(s.texts()) for s in sources]
store = EmbeddingCache(cache, shard_rows=1024)  # shards of 1024 rows at both sizes
tables = [teacher_targets(Hashed(), c, 64, store) for c in columns]
table = TeacherTable.spanning(tables, [len(s) for s in sources], "hashed")
for rows in np.random.default_rng(0).integers(0, len(table), size=(50, 64)):  # batches' lookups, as in training
    table.lookup(torch.from_numpy(rows))
print(json.dumps({"growth": max(Hashed.peak, anon()) - base, "rows": len(table), "misses": store.misses}))
"""


def test_a_mixture_teacher_table_holds_no_list_of_its_texts(tmp_path) -> None:
    small, large = write_texts(tmp_path / "small", 20_000), write_texts(tmp_path / "large", 200_000)
    cache = tmp_path / "cache"
    env = {**os.environ, "EMBEDLAB_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def measure(kind: str, files: list[str], store: str) -> dict:
        args = [sys.executable, "-c", TABLE_CHILD, kind, str(tmp_path / store), *files]
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    column = {n: measure("column", files, f"c{n}") for n, files in ((20_000, small), (200_000, large))}
    assert column[200_000]["rows"] == 200_000 and column[200_000]["misses"] == 2  # encoded here, one entry a source
    lists = {n: measure("list", files, f"l{n}") for n, files in ((20_000, small), (200_000, large))}
    grew = (column[200_000]["growth"] - column[20_000]["growth"]) / MIB
    list_grew = (lists[200_000]["growth"] - lists[20_000]["growth"]) / MIB
    assert list_grew > 12, f"a list of the texts grew by only {list_grew:.1f} MiB: the measurement cannot see growth"
    assert grew < 3, f"RssAnon grew by {grew:.1f} MiB from 20k to 200k texts (as lists: {list_grew:.1f} MiB)"
