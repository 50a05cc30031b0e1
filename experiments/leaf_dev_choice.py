"""The LEAF dev rule, fixed before the runs (leaf_lr_dev.sh, leaf_steps.sh): among the dev runs under RUNS (every
<run>/manifest.json), the highest dev asymmetric nDCG@10 whose held-out student-teacher cosine did not fall (a
collapse shows there first). Prints the table to stderr and the chosen run to stdout: its folder name, or with
--by KEY that run's resolved config value (e.g. optim.lr).

  python experiments/leaf_dev_choice.py outputs/leaf_steps/dev
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from embedlab.report.leaf_pipeline import dev_choice, dev_markdown, dev_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="the folder of the dev runs")
    parser.add_argument("--by", help="name the chosen run by this config key instead of its folder")
    args = parser.parse_args()
    rows = dev_runs(args.runs, args.by)
    if not rows:
        sys.exit(f"leaf_dev_choice.py: no finished run (manifest.json) under {args.runs}")
    print(dev_markdown(rows, args.by or "run"), file=sys.stderr)
    print(dev_choice(rows)["run"])


if __name__ == "__main__":
    main()
