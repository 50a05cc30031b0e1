"""The training-data loader alone at scale: memory-mapped Arrow mixtures vs today's list readers.

    python bench/data_scale.py [--sizes 1000000 10000000] [--list-size 1000000] [--workdir outputs/bench/data_scale]
                               [--repeats 3] [--batch-size 32] [--max-batches 0]

For each size N a mixture of N generated examples is written to `--workdir` (never committed): half (query,
passage) pairs in BEIR's generated-query JSONL, a quarter and a quarter plain texts in two JSONL files; words are
drawn from the SciFact corpus (or made up when the staged data is absent). Every measurement is a fresh
subprocess reading /proc/self/status:

  build   Arrow files built from the JSONL (validation + ArrowWriter), timed once per size
  arrow   the mixture opened from its cache (memory-mapped) and one epoch of one-dataset batches fetched through
          `MixtureBatchSampler` + `MixtureDataset.__getitems__` (examples, no tokenization)
  list    today's readers (`read_query_pairs`, `read_texts`) into Python lists, batched by
          `LengthGroupedBatchSampler` over `IndexedDataset`, at `--list-size` only

Reported per contender: peak RssAnon (and how much of it came after the imports: the data's own), peak RssFile
(sampled every 50 batches and at the end), VmHWM, open/read seconds (imports excluded), examples/s over the epoch
(median of `--repeats`, contenders alternating order). Checked: two arrow runs with one seed yield the same
examples in the same order (a hash over the ids in order); another seed another order; and at `--list-size` both
readers hold the same examples (an order-free hash over the ids).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, os, sys, time
import numpy as np

def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out

kind, folder = sys.argv[1], sys.argv[2]
seed, batch_size, max_batches = (int(x) for x in sys.argv[3:6])
files = json.loads(open(os.path.join(folder, "files.json")).read())
peak = {"RssAnon": 0, "RssFile": 0}
def sample():
    for k in peak:
        peak[k] = max(peak[k], status()[k])
from pathlib import Path
from embedlab.data.arrow import open_source
from embedlab.data.batching import LengthGroupedBatchSampler
from embedlab.data.mixture import MixtureBatchSampler
from embedlab.data.rows import RowSpec
from embedlab.data.training import example_text, read_query_pairs, read_texts
from embedlab.lit.datamodule import IndexedDataset
from embedlab.lit.mixture import MixtureDataset, MixturePart
base = status()  # after the imports: what follows is the data's own memory
started = time.perf_counter()
if kind in ("arrow", "build"):
    specs = [RowSpec("pairs", "pairs", "genq"), RowSpec("texts_a", "texts"), RowSpec("texts_b", "texts")]
    sources = [open_source(s, files[s.name]) for s in specs]
    if kind == "build":
        print(json.dumps({"seconds": time.perf_counter() - started, "rows": sum(map(len, sources))}))
        sys.exit(0)
    lengths = [s.lengths for s in sources]
    sampler = MixtureBatchSampler([len(s) for s in sources], batch_size, lengths=lengths, seed=seed)
    dataset = MixtureDataset([MixturePart(s.spec.name, s, None, None) for s in sources], sampler)
    fetch = dataset.__getitems__
else:
    examples = list(read_query_pairs(Path(files["pairs"])))
    sizes = [len(examples)]
    for name in ("texts_a", "texts_b"):
        texts = read_texts({"name": name, "type": "jsonl", "path": files[name]})
        examples += texts
        sizes.append(len(texts))
    sources = np.repeat(np.arange(3), sizes)
    lengths = [len(example_text(e)) for e in examples]
    sampler = LengthGroupedBatchSampler(lengths, batch_size, sources=sources, seed=seed)
    dataset = IndexedDataset(examples)
    fetch = lambda rows: [dataset[r] for r in rows]
opened = time.perf_counter() - started
sample()
order, members, count = hashlib.sha256(), 0, 0
started = time.perf_counter()
for i, rows in enumerate(sampler):
    if max_batches and i >= max_batches:
        break
    for _, e in fetch(rows):
        key = getattr(e, "id", None) or e.query_id
        key = key.split(":", 1)[1] if kind == "arrow" and not key.startswith(("texts_a:", "texts_b:")) else key
        order.update(key.encode())
        members = (members + int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")) % 2**64
        count += 1
    if i % 50 == 0:
        sample()
seconds = time.perf_counter() - started
sample()
print(json.dumps({"open_s": opened, "iter_s": seconds, "examples": count, "peak": peak, "base": base,
                  "hwm": status()["VmHWM"], "order": order.hexdigest(), "members": members}))
"""


def vocabulary() -> list[str]:
    """Words of the SciFact corpus (a realistic length and character mix), else made-up syllable words."""
    data = Path(os.environ.get("EMBEDLAB_DATA") or REPO.parent / "shared" / "data") / "scifact" / "corpus.jsonl.gz"
    if data.is_file():
        words: dict[str, None] = {}
        with gzip.open(data, "rt", encoding="utf-8") as f:
            for line in f:
                words.update(dict.fromkeys(json.loads(line)["text"].split()))
                if len(words) > 20000:
                    break
        return list(words)
    return [a + b + c for a in "bcdfgklmnprstvz" for b in "aeiou" for c in ("", "n", "r", "st", "ng")]


def generate(folder: Path, n: int, seed: int = 0) -> dict[str, str]:
    """The mixture's three JSONL files (written once per size; `files.json` marks a complete set)."""
    import numpy as np

    done = folder / "files.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    words = np.array(vocabulary())
    rng = np.random.default_rng(seed)
    counts = {"pairs": n // 2, "texts_a": n // 4, "texts_b": n - n // 2 - n // 4}
    files = {}
    for name, count in counts.items():
        path = folder / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for start in range(0, count, 10000):
                size = min(10000, count - start)
                lengths = rng.integers(4, 40, size=size)
                drawn = words[rng.integers(0, len(words), size=int(lengths.sum()))]
                cuts = np.cumsum(lengths)[:-1]
                for k, toks in enumerate(np.split(drawn, cuts)):
                    text = " ".join(toks)
                    i = start + k
                    if name == "pairs":
                        query = " ".join(toks[: max(2, len(toks) // 4)])
                        f.write(json.dumps({"_id": f"d{i}", "title": "", "text": text, "query": query}) + "\n")
                    else:
                        f.write(json.dumps({"id": f"t{i}", "text": text}) + "\n")
        files[name] = str(path)
    done.write_text(json.dumps(files))
    return files


def child(kind: str, folder: Path, seed: int, args) -> dict:
    env = {**os.environ, "EMBEDLAB_CACHE": str(args.workdir / "cache"), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    cmd = [sys.executable, "-c", CHILD, kind, str(folder), str(seed), str(args.batch_size), str(args.max_batches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} on {folder} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def header() -> str:
    from common import header as machine  # here, not at the top: the children (-c CHILD) stay free of it

    return f"{machine('datasets', 'pyarrow')}; children: OMP_NUM_THREADS=1, Python {platform.python_version()}"


def mib(x: float) -> str:
    return f"{x / 2**20:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--list-size", type=int, default=None, help="today's reader at this size (default: smallest)")
    parser.add_argument("--workdir", type=Path, default=Path("outputs/bench/data_scale"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batches", type=int, default=0, help="stop each epoch after this many batches (0: all)")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    list_size = args.list_size or min(args.sizes)
    print(header())
    rows, checks = [], []
    for n in sorted(set(args.sizes) | {list_size}):
        folder = args.workdir / f"n{n}"
        started = time.perf_counter()
        generate(folder, n)
        print(f"N={n:,}: files ready in {time.perf_counter() - started:.0f} s", flush=True)
        build = child("build", folder, 0, args)
        contenders = ["arrow"] if n in args.sizes else []
        contenders += ["list"] if n == list_size else []
        runs: dict[str, list[dict]] = {c: [] for c in contenders}
        for r in range(args.repeats):
            for kind in contenders if r % 2 == 0 else contenders[::-1]:  # alternate the order
                runs[kind].append(child(kind, folder, 0, args))
        if "arrow" in runs:
            other = child("arrow", folder, 1, args)
            # the order check needs two processes with seed 0 even when only one was timed
            again = runs["arrow"][1:] or [child("arrow", folder, 0, args)]
            same = {runs["arrow"][0]["order"]} == {run["order"] for run in again}
            checks.append(f"N={n:,} arrow: same order for seed 0 across {1 + len(again)} processes: {same}; "
                          f"seed 1 differs: {other['order'] != runs['arrow'][0]['order']}")  # fmt: skip
        if len(runs) == 2 and not args.max_batches:
            agree = runs["arrow"][0]["members"] == runs["list"][0]["members"]
            checks.append(f"N={n:,} arrow and list readers hold the same examples: {agree}")
        for kind, results in runs.items():
            rate = statistics.median(x["examples"] / x["iter_s"] for x in results)
            rows.append({
                "N": n, "reader": kind, "examples": results[0]["examples"],
                "open_s": statistics.median(x["open_s"] for x in results),
                "build_s": build["seconds"] if kind == "arrow" else None,
                "examples_per_s": rate,
                "peak_rss_anon": max(x["peak"]["RssAnon"] for x in results),
                "anon_growth": max(x["peak"]["RssAnon"] - x["base"]["RssAnon"] for x in results),
                "peak_rss_file": max(x["peak"]["RssFile"] for x in results),
                "vm_hwm": max(x["hwm"] for x in results),
            })  # fmt: skip
    columns = "N | reader | examples read | build s | open s | examples/s | peak RssAnon MiB | of which data MiB"
    columns += " | peak RssFile MiB"
    columns += " | VmHWM MiB"
    print(f"\n| {columns} |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        build = f"{r['build_s']:.1f}" if r["build_s"] is not None else "–"
        print(f"| {r['N']:,} | {r['reader']} | {r['examples']:,} | {build} | {r['open_s']:.1f} | "
              f"{r['examples_per_s']:,.0f} | {mib(r['peak_rss_anon'])} | {mib(r['anon_growth'])} | "
              f"{mib(r['peak_rss_file'])} | {mib(r['vm_hwm'])} |")  # fmt: skip
    print()
    for line in checks:
        print(line)
    (args.workdir / "data_scale.json").write_text(json.dumps({"header": header(), "rows": rows, "checks": checks}))


if __name__ == "__main__":
    main()
