"""The leaf_teacher pipeline's headline (embedlab/report/leaf_pipeline.py): writes <out>/<name>.md (also printed)
and <out>/<name>.json (the same numbers, and each LEAF run's pool size, which notebooks/experiments.ipynb draws from
a record of <out>). Pool sizes are counted from each run's data config, so the data root the runs read must still
exist. experiments/leaf_steps.sh reads its own layout with --leaf test --teacher <its teacher's run> --name.

  python experiments/leaf_teacher_report.py outputs/leaf_teacher
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from embedlab.io import write_json_atomic, write_text_atomic
from embedlab.report import leaf_pipeline
from embedlab.training.prepare import read_examples


def pool_texts(out: Path, leaf: str) -> dict[str, int]:
    """LEAF run -> the texts its data config reads (held-out ones included); runs that differ only in seed share a
    data config, read once."""
    counts, by_config = {}, {}
    for run in leaf_pipeline.leaf_runs(out, leaf):
        data = OmegaConf.load(run / "config.yaml").data
        key = OmegaConf.to_yaml(data)
        if key not in by_config:
            by_config[key] = sum(map(len, read_examples(data, data.root).values()))
        counts[run.name] = by_config[key]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the output folder of experiments/leaf_teacher.sh (or leaf_steps.sh)")
    parser.add_argument("--leaf", default=leaf_pipeline.LEAF_RUNS, help="the LEAF runs' folder under <out>")
    parser.add_argument("--teacher", type=Path, help="the teacher's run (default <out>/pipeline/teacher)")
    parser.add_argument("--name", default="leaf_teacher", help="the written files' name: <out>/<name>.md, .json")
    args = parser.parse_args()
    head = leaf_pipeline.headline(args.out, leaf=args.leaf, teacher=args.teacher)
    sizes = pool_texts(args.out, args.leaf)
    rows = leaf_pipeline.curve(args.out, sizes, leaf=args.leaf)
    md, js = args.out / f"{args.name}.md", args.out / f"{args.name}.json"
    write_json_atomic(js, {"headline": head, "pool_texts": sizes, "curve": rows})
    text = leaf_pipeline.to_markdown(head, rows)
    write_text_atomic(md, text)
    print(text + f"written: {md}, {js}")


if __name__ == "__main__":
    main()
