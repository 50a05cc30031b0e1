"""What every embedlab CLI does the same way: logging, and running its job in the Hydra run directory with
user-facing errors printed as one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from embedlab.errors import EmbedlabError
from embedlab.manifest import git_state


def setup_logging() -> None:
    logging.getLogger("embedlab").setLevel(logging.INFO)
    # transformers' per-tensor "Loading weights" bars drown the useful log lines
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def run_hydra_job(run: Callable[[DictConfig, Path], object], cfg: DictConfig, log: logging.Logger) -> None:
    """Run a CLI body in the Hydra run directory; user-facing problems print one line and exit 2, no traceback."""
    from hydra.core.hydra_config import HydraConfig

    setup_logging()
    git_state()  # the commit the job starts with, not one made while it runs
    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except EmbedlabError as e:
        log.error("%s", e)
        sys.exit(2)
