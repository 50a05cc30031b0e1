"""Compiled vs eager training step: `step.compile=true` (torch.compile of the student's backbone, inductor) against
the eager backbone, on the same module, loss, batches and optimizer.

    python bench/compile_step.py [--steps 10] [--repeats 3] [--batch-size 32] [--max-length 128] [--precision fp32]

all-MiniLM-L6-v2, InfoNCE over SciFact train (claim, cited abstract) pairs, AdamW with gradient clipping at 1.0 on both
sides. Each repeat runs both contenders (order alternating) from the same initial weights over the same batches:
the compiled side's first calls pay the compilation (one graph for no-grad, one for training), reported apart; the
timed steps come after one untimed step. Printed: every repeat's steps/s, the median (min–max) of each side, the
ratio compiled / eager, the first calls' seconds, the difference of the first batch's loss (eval mode: no dropout),
and the commit, CPU model, thread count and ISA.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import header, spread, turns

from embedlab.data.collate import Collator
from embedlab.data.training import read_pairs
from embedlab.hub import resolve_model
from embedlab.lit.module import EmbeddingModule
from embedlab.losses import build_loss
from embedlab.models import Encoder
from embedlab.report.table import format_table


def build(compile: bool, args) -> tuple[EmbeddingModule, torch.optim.Optimizer]:
    torch.manual_seed(0)
    student = Encoder.from_pretrained(str(resolve_model("all-MiniLM-L6-v2")), max_length=args.max_length)
    module = EmbeddingModule(student, build_loss({"infonce": {"temperature": 0.05}}), compile=compile)
    return module, torch.optim.AdamW(module.parameters(), lr=2e-5)


def train(module: EmbeddingModule, optimizer, batches: list[dict], bf16: bool) -> list[float]:
    """Seconds per step, stepping as Lightning does: forward, loss, backward, clip, optimizer step."""
    module.train()
    times = []
    for batch in batches:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # Lightning's bf16-mixed
            loss = module.training_step(batch, 0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat (after one untimed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # self.log() outside a Trainer
    pairs = read_pairs("scifact", "train")[: (args.steps + 1) * args.batch_size]
    tokenizer = Encoder.from_pretrained(str(resolve_model("all-MiniLM-L6-v2"))).tokenizer
    collate = Collator(tokenizer, args.max_length)
    batches = [
        collate(list(enumerate(pairs[i : i + args.batch_size])))
        for i in range(0, len(pairs) - args.batch_size + 1, args.batch_size)
    ]
    print(header("transformers"))
    print(
        f"all-MiniLM-L6-v2, InfoNCE, batch {args.batch_size} pairs, max {args.max_length} tokens, {args.precision}, "
        f"{args.steps} timed steps × {args.repeats} repeats (median)\n"
    )
    rates: dict[str, list[float]] = {"eager": [], "compiled": []}
    first_loss: dict[str, float] = {}
    first_seconds: dict[str, float] = {}  # the compiled side's first no-grad call and first step: compilation
    for repeat in range(args.repeats):
        for side in turns(["eager", "compiled"], repeat):
            module, optimizer = build(side == "compiled", args)
            if side not in first_loss:  # without dropout: its masks come from different RNG streams on each side
                start = time.perf_counter()
                with torch.no_grad():
                    first_loss[side] = float(module.eval().training_step(batches[0], 0))
                first_seconds[f"{side} no-grad"] = time.perf_counter() - start
            times = train(module, optimizer, batches, args.precision == "bf16")
            first_seconds.setdefault(f"{side} step", times[0])
            rates[side].append(len(times[1:]) / sum(times[1:]))
            print(f"  repeat {repeat + 1}: {side} {rates[side][-1]:.4g} steps/s", flush=True)
    eager, compiled = spread(rates["eager"]), spread(rates["compiled"])
    print()
    rows = [
        {"side": side, "steps/s": s["median"], "min": s["min"], "max": s["max"], "ratio": s["median"] / eager["median"]}
        for side, s in (("eager", eager), ("compiled (step.compile=true)", compiled))
    ]
    print(format_table(rows, ["side", "steps/s", "min", "max", "ratio"], precision=3))
    print(
        "\nfirst calls (compilation included on the compiled side): no-grad "
        f"{first_seconds['compiled no-grad']:.1f} s (eager {first_seconds['eager no-grad']:.1f} s), training step "
        f"{first_seconds['compiled step']:.1f} s (eager {first_seconds['eager step']:.1f} s)"
    )
    gap = abs(first_loss["compiled"] - first_loss["eager"])
    print(f"first batch's loss without dropout, |compiled − eager|: {gap:.2e}")


if __name__ == "__main__":
    main()
