"""`embedlab-report`: compare finished runs, one row per configuration, mean ± std over seeds.

embedlab-report multirun/2026-11-29_10-00-00 --task scifact --metric ndcg_at_10
"""

from __future__ import annotations

import argparse
import sys

from embedlab.errors import EmbedlabError
from embedlab.report.runs import find_runs, summarize
from embedlab.report.table import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedlab-report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run or sweep directories (searched recursively)")
    parser.add_argument("--task", default="scifact", help="task in metrics.json")
    parser.add_argument("--metric", default="ndcg_at_10", help="metric of that task")
    args = parser.parse_args(argv)
    try:
        rows = summarize(find_runs(args.paths), args.task, args.metric)
    except EmbedlabError as e:
        print(f"embedlab-report: {e}", file=sys.stderr)
        return 2
    for row in rows:
        row["seeds"] = ",".join(map(str, row["seeds"]))
    print(
        format_table(
            rows,
            ["configuration", "n", "seeds", "mean", "std"],
            ["configuration", "n", "seeds", f"{args.task} {args.metric} mean", "std"],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
