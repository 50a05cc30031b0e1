"""`embedlab-eval`: evaluate a model on retrieval and STS tasks, writing metrics.json and a run record.

embedlab-eval model=minilm tasks=[scifact,stsb]
embedlab-eval model=minilm tasks=[scifact,mteb:SciFact,mteb:STSBenchmark]   (MTEB's own tasks, offline on local data)
embedlab-eval model.path=outputs/train/.../model query_model=minilm eval.dims=[128,256] eval.precisions=[float32,binary]

The job itself is `embedlab.jobs.evaluate.run`.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedlab.cli.common import run_hydra_job
from embedlab.config.build import CONF_DIR
from embedlab.jobs.evaluate import run

log = logging.getLogger("embedlab.eval")


@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(run, cfg, log)


if __name__ == "__main__":
    main()
