"""Paired comparison of the decoder_lora.sh runs: per-query nDCG@10 differences, bootstrap 95% interval of the mean.

python experiments/decoder_lora_paired.py outputs/decoder_lora outputs/decoder_lora_s1 ...
Each folder is one `decoder_lora.sh` output (causal/<n>/, bidirectional/<n>/); the untrained base model is read from
the first folder that has a `before/` evaluation (it does not depend on the seed: fresh LoRA adapters are a no-op).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from embedlab.report.significance import read_per_query

METRIC = "ndcg_at_10"


def per_query(folder: Path) -> dict[str, float]:
    return {q: row[METRIC] for q, row in read_per_query(folder, "scifact").items()}


def interval(diffs: np.ndarray, seed: int = 0, n: int = 10_000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(diffs, size=(n, len(diffs))).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main(outs: list[Path]) -> None:
    runs = {
        mode: [r for out in outs for r in sorted((out / mode).glob("[0-9]*"))] for mode in ("causal", "bidirectional")
    }
    before = {m: next(per_query(r / "before") for r in rs if (r / "before").is_dir()) for m, rs in runs.items()}
    after = {m: [per_query(r) for r in rs] for m, rs in runs.items()}
    comparisons = {
        "causal after - before": [(a, before["causal"]) for a in after["causal"]],
        "bidirectional after - before": [(a, before["bidirectional"]) for a in after["bidirectional"]],
        "bidirectional before - causal before": [(before["bidirectional"], before["causal"])],
        "bidirectional - causal, after (same seed)": list(zip(after["bidirectional"], after["causal"], strict=True)),
    }
    for name, pairs in comparisons.items():
        diffs = np.array([x[q] - y[q] for x, y in pairs for q in x])  # queries × seeds, paired
        low, high = interval(diffs)
        print(
            f"{name:45s} n={len(diffs):3d}  mean {diffs.mean():+.4f}  95% [{low:+.4f}, {high:+.4f}]  "
            f"up {(diffs > 0).sum()}  down {(diffs < 0).sum()}"
        )


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
