"""Does embedlab's evaluation reproduce MTEB's numbers? Full data, all-MiniLM-L6-v2, three ways per task.

    python experiments/mteb_parity.py [--tasks scifact stsb sick arguana] [--model minilm] [--no-mteb]

Per task: embedlab's evaluator, MTEB's own implementation of the task run through embedlab's mteb adapter on the
same local files (`mteb:<Name>`, offline), and MTEB's published score. Exits 1 if either computed score differs
from the published one by more than the tolerance (0.003), or the two computed ones by more than 1e-4. Not a CI
test: the full SciFact corpus alone takes minutes on 2 cores (the fast check is tests/test_mteb_adapter.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from embedlab.cli.common import setup_logging
from embedlab.config.build import build_encoder
from embedlab.data import get_task
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
AGREEMENT = 1e-4  # embedlab vs mteb on identical data and model: mteb rounds retrieval scores to 5 decimals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["scifact", "stsb"], choices=sorted(PUBLISHED))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--tolerance", type=float, default=0.003)
    parser.add_argument("--out", type=Path, default=Path("outputs/mteb_parity"))
    parser.add_argument("--no-cache", action="store_true", help="encode from scratch (mteb encodes separately too)")
    parser.add_argument("--no-mteb", action="store_true", help="embedlab's evaluator only (no mteb install needed)")
    args = parser.parse_args()
    setup_logging()
    encoder = build_encoder(args.model)
    start = time.perf_counter()
    names = {t: f"mteb:{get_task(t).mteb_name}" for t in args.tasks}
    tasks = [*args.tasks, *([] if args.no_mteb else names.values())]
    cache = None if args.no_cache else EmbeddingCache()
    results = {r.task: r for r in evaluate_tasks(tasks, encoder, cache=cache, out_dir=args.out)}
    rows = []
    for task in args.tasks:
        metric, published = PUBLISHED[task]
        ours = results[task].metrics[metric]
        via_mteb = None if args.no_mteb else results[names[task]].metrics[metric]
        ok = abs(ours - published) <= args.tolerance
        if via_mteb is not None:
            ok = ok and abs(via_mteb - published) <= args.tolerance and abs(via_mteb - ours) <= AGREEMENT
        rows.append(
            {
                "task": task,
                "metric": metric,
                "mteb": via_mteb,
                "embedlab": ours,
                "MTEB published": published,
                "diff": round(ours - published, 4),
                "ok": ok,
            }
        )
    print(format_table(rows, ["task", "metric", "mteb", "embedlab", "MTEB published", "diff", "ok"], precision=5))
    print(f"wall time {time.perf_counter() - start:.0f} s; per-task files in {args.out}")
    (args.out / "parity.json").write_text(json.dumps(rows, indent=2))
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
