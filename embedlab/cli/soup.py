"""`embedlab-soup`: average fine-tuned checkpoints into one model (uniform or greedy model soup).

embedlab-soup "models=[runs/a/model,runs/b/model,runs/c/model]"                  # uniform soup
embedlab-soup method=greedy "models=[...]" data.root=outputs/soup/data dev.split=dev eval.tasks=[scifact]

The job itself is `embedlab.training.soup.run`.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedlab.cli.common import run_hydra_job
from embedlab.config.build import CONF_DIR
from embedlab.training.soup import run

log = logging.getLogger("embedlab.soup")


@hydra.main(config_path=str(CONF_DIR), config_name="soup", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(run, cfg, log)


if __name__ == "__main__":
    main()
