"""Does embedlab's evaluation reproduce MTEB's published numbers? Full data, all-MiniLM-L6-v2.

    python experiments/mteb_parity.py [--tasks scifact stsb sick arguana] [--model minilm]

Prints embedlab's score, MTEB's published score and the difference per task; exits 1 if any differs by
more than the tolerance (0.003). Not a CI test: the full SciFact corpus alone takes minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from embedlab.cli.common import setup_logging
from embedlab.config.build import build_encoder
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.runner import evaluate_tasks
from embedlab.report.table import format_table

# MTEB leaderboard results for sentence-transformers/all-MiniLM-L6-v2 (test splits; SICK-R over all pairs).
PUBLISHED = {
    "scifact": ("ndcg_at_10", 0.6451),
    "stsb": ("cosine_spearman", 0.8203),
    "sick": ("cosine_spearman", 0.7758),
    "arguana": ("ndcg_at_10", 0.5017),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["scifact", "stsb"], choices=sorted(PUBLISHED))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--tolerance", type=float, default=0.003)
    parser.add_argument("--out", type=Path, default=Path("outputs/mteb_parity"))
    parser.add_argument("--no-cache", action="store_true", help="encode from scratch")
    args = parser.parse_args()
    setup_logging()
    encoder = build_encoder(args.model)
    start = time.perf_counter()
    results = evaluate_tasks(args.tasks, encoder, cache=None if args.no_cache else EmbeddingCache(), out_dir=args.out)
    rows = []
    for r in results:
        metric, published = PUBLISHED[r.task]
        ours = r.metrics[metric]
        rows.append(
            {
                "task": r.task,
                "metric": metric,
                "embedlab": ours,
                "MTEB": published,
                "diff": round(ours - published, 4),
                "ok": abs(ours - published) <= args.tolerance,
            }
        )
    print(format_table(rows, ["task", "metric", "embedlab", "MTEB", "diff", "ok"]))
    print(f"wall time {time.perf_counter() - start:.0f} s; per-task files in {args.out}")
    (args.out / "parity.json").write_text(json.dumps(rows, indent=2))
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
