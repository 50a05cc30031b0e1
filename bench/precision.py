"""fp32 vs bf16 autocast on this CPU: what `precision: auto` decides, and what each choice costs.

    python bench/precision.py [--repeats 3] [--model all-mpnet-base-v2]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python bench/precision.py   # emulate an AVX2-only CPU

Encodes the same SciFact texts (64 claims, and 16 abstracts at 256 tokens) in fp32 and in bf16 autocast,
taking turns (order rotating: fp32, bf16 then bf16, fp32), `--repeats` times each, and prints every run, texts/s
(median, min–max), the bf16/fp32 ratio of the medians, the largest difference of the normalised embeddings, and what
`auto` picks here with its reason; first the commit, CPU, torch capability and threads. On an AVX2-only CPU bf16 is
emulated (about 4x slower than fp32); with AVX512-BF16 or AMX it is the faster one.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch
from common import header, spread, turns

from embedlab.data import load_task
from embedlab.data.lines import read_jsonl
from embedlab.data.tasks import data_root
from embedlab.manifest import hardware
from embedlab.models import Encoder
from embedlab.precision import probe, resolve
from embedlab.report.table import format_table


def claims(n: int) -> list[str]:
    rows = read_jsonl(data_root() / "scifact" / "queries.jsonl")
    return [row["text"] for _, (_, row) in zip(range(n), rows, strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-mpnet-base-v2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("embedlab").setLevel(logging.WARNING)
    task = load_task("scifact", limit=16, max_docs=16)
    sets = {"64 claims": claims(64), "16 abstracts @256": list(task.corpus.values())[:16]}
    encoder = Encoder.from_pretrained(args.model, max_length=256, precision="fp32", backend="torch")  # both: torch
    hw = probe("cpu")
    print(header("transformers"))
    print(json.dumps(hardware()))
    print(f"precision auto here: {resolve('auto')} ({hw.reason})")
    rows = []
    for name, texts in sets.items():
        seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
        vectors = {}
        encoder.encode(texts[:4], batch_size=32)  # warm-up: first-call allocations and kernel selection
        for r in range(args.repeats):
            for precision in turns(["fp32", "bf16"], r):  # rotating: a load change hits both sides alike
                encoder.precision = precision
                start = time.perf_counter()
                vectors[precision] = encoder.encode(texts, batch_size=32)
                seconds[precision].append(time.perf_counter() - start)
                print(f"  {name}, repeat {r + 1}: {precision} {len(texts) / seconds[precision][-1]:.2f} texts/s")
        rate = {p: spread([len(texts) / t for t in s]) for p, s in seconds.items()}
        rows.append(
            {
                "texts": name,
                "fp32 texts/s": rate["fp32"]["median"],
                "fp32 min–max": "{min:.2f}–{max:.2f}".format(**rate["fp32"]),
                "bf16 texts/s": rate["bf16"]["median"],
                "bf16 min–max": "{min:.2f}–{max:.2f}".format(**rate["bf16"]),
                "bf16 / fp32": rate["bf16"]["median"] / rate["fp32"]["median"],
                "max |Δ|": float(np.abs(vectors["bf16"] - vectors["fp32"]).max()),
            }
        )
    print(f"{args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} runs")
    print(format_table(rows, list(rows[0]), precision=3))


if __name__ == "__main__":
    main()
