"""`embedlab-train-reranker`: a cross-encoder distilled from scored lists, saved as a transformers folder.

embedlab-train-reranker input=outputs/score/<run>/scored.jsonl            # MiniLM backbone + fresh head
embedlab-score input=... teacher_scores=reranker teacher_scores.teachers.0.model=outputs/reranker/<run>/reranker

Run directory: reranker/ (AutoModelForSequenceClassification + tokenizer), metrics.json (held-out agreement with the
teacher before and after: top-1 agreement, mean per-list Spearman), config.yaml, manifest.json.

The job itself is `embedlab.jobs.reranker.run`.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedlab.cli.common import run_hydra_job
from embedlab.config.build import CONF_DIR
from embedlab.jobs.reranker import run

log = logging.getLogger("embedlab.reranker")


@hydra.main(config_path=str(CONF_DIR), config_name="reranker", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(run, cfg, log)


if __name__ == "__main__":
    main()
