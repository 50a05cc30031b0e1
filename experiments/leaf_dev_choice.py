"""The LEAF dev rule, fixed before the runs (leaf_lr_dev.sh, leaf_steps.sh): among the dev runs under RUNS (every
<run>/manifest.json), the highest dev asymmetric nDCG@10 whose held-out student-teacher cosine did not fall (a
collapse shows there first). Prints the table to stderr and the chosen run to stdout: its folder name, or with
--by KEY that run's resolved config value (e.g. optim.lr).

  python experiments/leaf_dev_choice.py outputs/leaf_steps/dev
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf


def read_runs(runs: Path, by: str | None) -> list[dict]:
    rows = []
    for manifest in sorted(runs.glob("*/manifest.json")):
        run = manifest.parent
        results = json.loads((run / "results.json").read_text(encoding="utf-8"))
        summary = json.loads(manifest.read_text(encoding="utf-8"))["summary"]
        label = str(OmegaConf.select(OmegaConf.load(run / "config.yaml"), by)) if by else run.name
        sts = results["student"].get("stsb", {}).get("cosine_spearman")
        rows.append({"run": label, "asym": results["asymmetric"]["scifact"]["ndcg_at_10"],
                     "student": results["student"]["scifact"]["ndcg_at_10"], "stsb": sts,
                     "before": summary["heldout_cosine_before"], "after": summary["heldout_cosine"]})  # fmt: skip
    return rows


def choose(rows: list[dict]) -> dict:
    """The rule: highest dev asymmetric nDCG@10 among the runs whose held-out cosine did not fall (all, if none)."""
    kept = [r for r in rows if r["after"] >= r["before"]] or rows
    return max(kept, key=lambda r: r["asym"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="the folder of the dev runs")
    parser.add_argument("--by", help="name the chosen run by this config key instead of its folder")
    args = parser.parse_args()
    rows = read_runs(args.runs, args.by)
    if not rows:
        sys.exit(f"leaf_dev_choice.py: no finished run (manifest.json) under {args.runs}")
    print(f"{args.by or 'run':>10} {'dev asym nDCG@10':>17} {'dev student nDCG@10':>20} {'STSb dev':>9} "
          f"{'held-out cos':>16}", file=sys.stderr)  # fmt: skip
    for r in rows:
        sts = "—" if r["stsb"] is None else f"{r['stsb']:.4f}"
        print(f"{r['run']:>10} {r['asym']:17.4f} {r['student']:20.4f} {sts:>9} {r['before']:7.3f} -> {r['after']:.3f}",
              file=sys.stderr)  # fmt: skip
    print(choose(rows)["run"])


if __name__ == "__main__":
    main()
