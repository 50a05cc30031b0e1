"""The leaf_teacher pipeline's headline (embedlab/report/leaf_pipeline.py): writes <out>/leaf_teacher.md (also
printed) and <out>/leaf_teacher.json (the same numbers, and each LEAF run's pool size, which
notebooks/experiments.ipynb draws from a record of <out>). Pool sizes are counted from each run's data config, so
the data root the runs read must still exist.

  python experiments/leaf_teacher_report.py outputs/leaf_teacher
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from embedlab.io import write_json_atomic, write_text_atomic
from embedlab.report import leaf_pipeline
from embedlab.training.prepare import read_examples


def pool_texts(out: Path) -> dict[str, int]:
    """LEAF run -> the texts its data config reads (held-out ones included); runs that differ only in seed share a
    data config, read once."""
    counts, by_config = {}, {}
    for run in (out / "pipeline" / "leaf").iterdir():
        data = OmegaConf.load(run / "config.yaml").data
        key = OmegaConf.to_yaml(data)
        if key not in by_config:
            by_config[key] = sum(map(len, read_examples(data, data.root).values()))
        counts[run.name] = by_config[key]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the output folder of experiments/leaf_teacher.sh")
    args = parser.parse_args()
    head = leaf_pipeline.headline(args.out)
    sizes = pool_texts(args.out)
    rows = leaf_pipeline.curve(args.out, sizes)
    write_json_atomic(args.out / "leaf_teacher.json", {"headline": head, "pool_texts": sizes, "curve": rows})
    text = leaf_pipeline.to_markdown(head, rows)
    write_text_atomic(args.out / "leaf_teacher.md", text)
    print(text + f"written: {args.out / 'leaf_teacher.md'}, {args.out / 'leaf_teacher.json'}")


if __name__ == "__main__":
    main()
