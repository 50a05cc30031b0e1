"""One AdamW step and one gradient clipping over all-MiniLM-L6-v2's parameters, per torch implementation.

    python bench/optimizer_step.py [--repeats 5] [--steps 5] [--model all-MiniLM-L6-v2]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python bench/optimizer_step.py   # emulate an AVX2-only CPU

What `optim.implementation` chooses between (issue 17): torch.optim.AdamW with `fused=True`, `foreach=True` (torch's
default on CPU when fused is not asked for) and `foreach=False` (a Python loop over the tensors), each with its own
copy of the weights and embedlab's parameter groups (decay 0.01, no decay on biases and norms), fp32, fed the same
fixed random gradients; and `clip_grad_norm_(…, 1.0)` with foreach on and off. Each repeat times `--steps` steps of
every contender after one untimed step (the moment buffers' allocation), the order rotating (`common.turns`); printed:
every run, the median ms per step (min–max), each ratio to the for-loop AdamW, and the largest weight difference from
it after all steps (fused and foreach compute the same update, rounded differently).
"""

from __future__ import annotations

import argparse
import time

import torch
from common import header, run_rotating, spread

from embedlab.lit.optim import OptimConfig, parameter_groups
from embedlab.models import Encoder
from embedlab.report.table import format_table

ADAMW = {"adamw fused": {"fused": True}, "adamw foreach": {"foreach": True}, "adamw for-loop": {"foreach": False}}
CLIP = {"clip foreach": True, "clip for-loop": False}


def copy_groups(groups: list[dict], grads: list[torch.Tensor]) -> list[dict]:
    """The groups over fresh copies of the weights, each holding a copy of its gradient: a contender of its own."""
    grad_of = iter(grads)
    return [{**g, "params": [with_grad(p, next(grad_of)) for p in g["params"]]} for g in groups]


def with_grad(p: torch.Tensor, grad: torch.Tensor) -> torch.nn.Parameter:
    param = torch.nn.Parameter(p.detach().clone())
    param.grad = grad.clone()
    return param


def timer(fn, steps: int):
    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - start) / steps * 1e3

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat, after one untimed")
    args = parser.parse_args()
    print(header("transformers"))
    groups = parameter_groups(Encoder.from_pretrained(args.model), OptimConfig())
    torch.manual_seed(0)
    grads = [torch.randn_like(p) * 1e-3 for g in groups for p in g["params"]]
    print(f"{sum(g.numel() for g in grads) / 1e6:.1f}M parameters in {len(grads)} tensors, {len(groups)} groups, fp32")

    optimizers = {name: torch.optim.AdamW(copy_groups(groups, grads), **kw) for name, kw in ADAMW.items()}
    clip_params = [with_grad(g, g) for g in grads]  # clipping reads and rescales gradients only
    sides = {name: timer(opt.step, args.steps) for name, opt in optimizers.items()}
    sides |= {
        name: timer(lambda fe=fe: torch.nn.utils.clip_grad_norm_(clip_params, 1.0, foreach=fe), args.steps)
        for name, fe in CLIP.items()
    }
    for opt in optimizers.values():
        opt.step()  # untimed: allocates the moment buffers
    results = run_rotating(sides, args.repeats)

    loop = [p for g in optimizers["adamw for-loop"].param_groups for p in g["params"]]
    rows = []
    for name, times in results.items():
        s = spread(times)
        base = spread(results["adamw for-loop" if name in optimizers else "clip for-loop"])["median"]
        row = {"contender": name, "ms": f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"}
        row["speed-up"] = f"{base / s['median']:.2f}x"
        if name in optimizers:
            mine = [p for g in optimizers[name].param_groups for p in g["params"]]
            row["diff"] = f"{max((a - b).abs().max().item() for a, b in zip(mine, loop, strict=True)):.1e}"
        rows.append(row)
    headers = ["contender", "ms per step, median (min–max)", "speed-up vs for-loop", "max |Δw| vs for-loop"]
    print(format_table(rows, ["contender", "ms", "speed-up", "diff"], headers))


if __name__ == "__main__":
    main()
