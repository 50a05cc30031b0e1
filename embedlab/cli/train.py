"""`embedlab-train`: train a student encoder from Hydra config, evaluate it, export it, record the run.

embedlab-train                                         # MiniLM + InfoNCE on SciFact train, eval on SciFact test
embedlab-train loss=focal_infonce loss.focal_infonce.gamma=2
embedlab-train experiment=leaf_demo                    # LEAF: mpnet teacher -> MiniLM + projection 384->768
embedlab-train ... resume=outputs/train/<run>          # continue a killed run from its last checkpoint

The job itself is `embedlab.training.train`, callable from Python with a composed config.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedlab.cli.common import run_hydra_job
from embedlab.config.build import CONF_DIR
from embedlab.training import train

log = logging.getLogger("embedlab.train")


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(train, cfg, log)


if __name__ == "__main__":
    main()
