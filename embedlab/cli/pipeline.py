"""`embedlab-pipeline`: run a multi-stage chain (conf/pipeline/*.yaml), resuming after its finished stages.

embedlab-pipeline kalm                                  # conf/pipeline/kalm.yaml
embedlab-pipeline my_chain.yaml out=outputs/chain2 start=/path/to/model
embedlab-pipeline kalm --dry-run                        # print the plan: run directories, inputs, what is finished
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from embedlab.cli.common import setup_logging
from embedlab.config.build import CONF_DIR
from embedlab.errors import ConfigError, EmbedlabError
from embedlab.report.table import format_table
from embedlab.training.pipeline import run_pipeline

log = logging.getLogger("embedlab.pipeline")


def load_spec(name: str, overrides: list[str]):
    """A pipeline by name (conf/pipeline/<name>.yaml) or path, with `key=value` overrides on top."""
    path = Path(name)
    if not path.is_file():
        path = CONF_DIR / "pipeline" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / "pipeline").glob("*.yaml"))
        raise ConfigError(f"pipeline {name!r} is neither a file nor one of {known}")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"pipeline overrides must be key=value, got {bad}")
    return OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))


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
