"""`embedlab-score`: soft labels for mined candidate lists from a bi-encoder and/or a cross-encoder reranker.

embedlab-score input=outputs/mine/<run>/negatives.jsonl                          # mpnet bi-encoder scores
embedlab-score input=... teacher_scores=mpnet_reranker teacher_scores.teachers.1.model=/path/to/reranker

Run directory: scored.jsonl (train with `data=scored data.path=<it> 'loss=[infonce,kl_distill]'`), config.yaml,
manifest.json.

The job itself is `embedlab.jobs.score.run`.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedlab.cli.common import run_hydra_job
from embedlab.config.build import CONF_DIR
from embedlab.jobs.score import run

log = logging.getLogger("embedlab.score")


@hydra.main(config_path=str(CONF_DIR), config_name="score", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(run, cfg, log)


if __name__ == "__main__":
    main()
