"""`embedlab-report`: compare finished runs, one row per configuration: mean ± std over seeds and a paired test over
queries against a baseline configuration; writes the table (Markdown, CSV) and PNG figures.

embedlab-report outputs/focal_sweep --baseline loss=infonce --metric ndcg_at_10 --metric recall_at_10 [--wandb]
    [--log-metric positive_rank --log-metric synthetic_rank]  (training-log table: first → last step, mean)
    [--vs-before]  (each configuration after training vs its runs' own before/ evaluation, paired over queries)

The job itself is `embedlab.jobs.report.run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from embedlab.errors import EmbedlabError
from embedlab.jobs.report import run
from embedlab.report.compare import METHODS
from embedlab.report.wandb_log import add_arguments as add_wandb_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedlab-report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run or sweep directories (searched recursively)")
    parser.add_argument("--task", default="scifact", help="task in metrics.json")
    parser.add_argument("--metric", action="append", help="metric of that task; repeat for several (ndcg_at_10)")
    parser.add_argument("--baseline", help="configuration the others are tested against (default: the first row)")
    parser.add_argument("--test", choices=METHODS, default="randomization", help="paired test over queries")
    parser.add_argument("--resamples", type=int, default=10_000, help="sign patterns / bootstrap samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--out", type=Path, help="where the table and figures go (default: <first path>/report)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument(
        "--vs-before", action="store_true", help="add a table: each configuration after vs its runs' before/ evaluation"
    )
    parser.add_argument(
        "--log-metric", action="append", help="a value the loss logs per step (positive_rank); repeat for several"
    )
    add_wandb_arguments(parser)
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except EmbedlabError as e:
        print(f"embedlab-report: {e}", file=sys.stderr)
        return 2
    print(report.markdown)
    print("written: " + ", ".join(str(p) for p in report.files))
    if report.wandb_run is not None:
        print(f"W&B run ({args.wandb_mode}): {report.wandb_run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
