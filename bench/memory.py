"""Peak memory of one training step vs batch size, plain vs GradCache (all-MiniLM-L6-v2, InfoNCE, CPU).

    python bench/memory.py [--sizes 32 64 128 256 512 1024] [--chunk-size 32] [--max-length 64] [--repeats 3]
                           [--out outputs/bench]

Each (mode, batch size) runs in a fresh process: build the model and one batch of real SciFact claims + abstracts,
reset the kernel's peak-RSS counter (`/proc/self/clear_refs`), run one full step as training runs it (forward, loss,
backward, gradient norm clipped to 1.0 — the config default — AdamW), read the peak (`VmHWM`). Reported: the step's
peak above the memory held before it — activations, gradients and optimizer state; the weights and the tokenized
batch are already resident. Each cell runs `--repeats` times, plain and GradCache taking turns (order rotating);
the table gives the median GB (min–max). Also printed, from the table's own numbers: the plain step's growth per
pair (least-squares slope over the measured batches), GradCache's growth from the smallest to the largest batch,
and the parameter count with the size of one fp32 copy (gradients; each AdamW moment). `--limit-gb` skips a plain
step whose extrapolated peak would not fit (the table says so). Writes memory.csv and memory.png to `--out`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import header, spread, turns

RUNNER = r"""
import json, os, sys, warnings
warnings.filterwarnings("ignore")
import torch
from embedlab.data.collate import Collator
from embedlab.data.training import read_pairs
from embedlab.hub import resolve_model
from embedlab.lit.module import EmbeddingModule
from embedlab.losses import build_loss
from embedlab.models import Encoder

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

size, chunk, max_length = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pairs = read_pairs("scifact", "train")
pairs = (pairs * (size // len(pairs) + 1))[:size]
encoder = Encoder.from_pretrained(resolve_model("all-MiniLM-L6-v2"), max_length=max_length)
module = EmbeddingModule(encoder, build_loss({"infonce": {"temperature": 0.05}}), chunk_size=chunk or None).train()
batch = Collator.for_encoder(encoder)(list(enumerate(pairs)))
optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=2e-5)
before = rss("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS counter: VmHWM now measures this step only
loss = module.training_step(batch, 0)
module.backward(loss)
params = [p for p in module.parameters() if p.requires_grad]
torch.nn.utils.clip_grad_norm_(params, 1.0)
optimizer.step()
print(json.dumps({"before": before, "peak": rss("VmHWM"), "tokens": int(batch["query"]["attention_mask"].sum()
      + batch["documents"]["attention_mask"].sum()), "params": sum(p.numel() for p in params)}))
"""


def measure(size: int, chunk: int, max_length: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(size), str(chunk), str(max_length)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"batch {size} chunk {chunk} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embedlab.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, marker in (("plain", "o"), ("gradcache", "s")):
        pts = [(r["batch"], r["step_gb"]) for r in rows if r["mode"] == mode and r["step_gb"] is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=marker, label=mode)
    ax.set(xscale="log", xlabel="batch size (query–document pairs)", ylabel="peak step memory (GB)")
    ax.set_xticks([r["batch"] for r in rows if r["mode"] == "plain"], labels=None)
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_title("all-MiniLM-L6-v2, InfoNCE, one training step on CPU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def measure_cells(args) -> list[dict]:
    """Every (mode, batch) cell `--repeats` times, the two modes taking turns; one row per cell with the median."""
    rows, last_plain, modes = [], None, {"plain": 0, "gradcache": args.chunk_size}
    for size in args.sizes:
        cells = {
            m: {"mode": m, "batch": size, "chunk": c or None, "step_gb": None, "runs": []} for m, c in modes.items()
        }
        if last_plain and last_plain[1] * size / last_plain[0] > args.limit_gb:
            cells["plain"]["note"] = f"skipped: ~{last_plain[1] * size / last_plain[0]:.0f} GB extrapolated"
        for r in range(args.repeats):
            for mode in turns([m for m in modes if "note" not in cells[m]], r):
                m = measure(size, modes[mode], args.max_length)
                cells[mode]["runs"].append((m["peak"] - m["before"]) / 1e9)
                cells[mode].update(tokens=m["tokens"], params=m["params"])
                print(f"{mode:9s} batch {size:5d}, repeat {r + 1}: step {cells[mode]['runs'][-1]:.3f} GB", flush=True)
        for cell in cells.values():
            if cell["runs"]:
                stats = spread(cell["runs"])
                cell.update(step_gb=stats["median"], min_gb=stats["min"], max_gb=stats["max"])
        if cells["plain"]["step_gb"] is not None:
            last_plain = (size, cells["plain"]["step_gb"])
        rows += cells.values()
    return rows


def figures(rows: list[dict]) -> list[str]:
    """The figures the README quotes, computed from this table."""
    lines = []
    plain = [(r["batch"], r["step_gb"]) for r in rows if r["mode"] == "plain" and r["step_gb"] is not None]
    if len(plain) >= 2:
        slope = np.polyfit(*zip(*plain, strict=True), 1)[0]
        lines.append(
            f"plain step: {slope * 1e3:.1f} MB per pair (least-squares slope over batches {plain[0][0]}–"
            f"{plain[-1][0]}; {slope * 1e3 / 2:.1f} MB per text)"
        )
    cached = [(r["batch"], r["step_gb"]) for r in rows if r["mode"] == "gradcache" and r["step_gb"] is not None]
    if len(cached) >= 2:
        lines.append(
            f"GradCache step: {cached[-1][1] - cached[0][1]:+.2f} GB from {cached[0][0]} to {cached[-1][0]} "
            f"pairs ({cached[0][1]:.2f} → {cached[-1][1]:.2f} GB)"
        )
    params = next((r["params"] for r in rows if "params" in r), None)
    if params:
        lines.append(
            f"trainable parameters: {params:,} = {params * 4 / 1e9:.3f} GB per fp32 copy (gradients, each of "
            f"AdamW's two moments: {3 * params * 4 / 1e9:.2f} GB together)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512, 1024])
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--limit-gb", type=float, default=16.0, help="skip plain steps extrapolated above this")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell, modes taking turns; median counts")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args()
    from embedlab.io import atomic_path
    from embedlab.report.table import format_table

    print(header("transformers"))
    rows = measure_cells(args)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "memory.csv") as tmp, open(tmp, "w", newline="") as f:
        fields = ["mode", "batch", "chunk", "tokens", "step_gb", "min_gb", "max_gb", "note"]
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "memory.png")
    table = [
        {
            "batch": size,
            **{
                mode: next(
                    (
                        f"{r['step_gb']:.2f} ({r['min_gb']:.2f}–{r['max_gb']:.2f})"
                        if r["step_gb"] is not None
                        else r.get("note")
                    )
                    for r in rows
                    if r["batch"] == size and r["mode"] == mode
                )
                for mode in ("plain", "gradcache")
            },
        }
        for size in args.sizes
    ]
    print(
        f"\nall-MiniLM-L6-v2, InfoNCE, max {args.max_length} tokens, GradCache chunk {args.chunk_size}; peak GB above "
        f"the resident model and batch, median (min–max) of {args.repeats} runs"
    )
    print(format_table(table, ["batch", "plain", "gradcache"], ["batch (pairs)", "plain step GB", "GradCache step GB"]))
    print("\n".join(figures(rows)))
    print(f"written: {args.out / 'memory.csv'}, {args.out / 'memory.png'}")


if __name__ == "__main__":
    main()
