"""`embedlab-pipeline`: run a multi-stage chain (conf/pipeline/*.yaml), resuming after its finished stages.

embedlab-pipeline kalm                                  # conf/pipeline/kalm.yaml
embedlab-pipeline my_chain.yaml out=outputs/chain2 start=/path/to/model
embedlab-pipeline kalm --dry-run                        # print the plan: run directories, inputs, what is finished
"""

from __future__ import annotations

import argparse
import logging
import sys

from embedlab.cli.common import setup_logging
from embedlab.errors import EmbedlabError
from embedlab.report.table import format_table
from embedlab.training.pipeline import load_spec, run_pipeline

log = logging.getLogger("embedlab.pipeline")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", help="a conf/pipeline/ name or a YAML file")
    parser.add_argument("overrides", nargs="*", help="key=value changes to the pipeline file (out=..., start=...)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan without running anything")
    args = parser.parse_args(argv)
    setup_logging()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    try:
        rows = run_pipeline(load_spec(args.pipeline, args.overrides), dry_run=args.dry_run)
    except EmbedlabError as e:
        log.error("%s", e)
        sys.exit(2)
    print(format_table(rows, ["stage", "cli", "run_dir", "status"]))


if __name__ == "__main__":
    main()
