"""`embedlab-mine`: hard negatives for a BEIR split, with diagnostics.

embedlab-mine                                             # MiniLM, SciFact train, rank window 1-100, 8 negatives
embedlab-mine mining=adaptive mining.min_rank=10          # adaptive per-query margin
embedlab-mine model=mpnet mining=relative mining.relative=0.9 data.path=/data/my_beir_folder
embedlab-mine search.method=blocked search.block_rows=100000   # exact, in bounded memory (or ivf_flat | ivf_pq | hnsw)

Run directory: negatives.jsonl (the training file: query, positives, negatives, their scores), mining_report.json
(what each filter dropped; false negatives under hidden positives), score_histogram.png, config.yaml, manifest.json.
Train on it with `embedlab-train data.negatives_file=<run dir>/negatives.jsonl data.num_negatives=N`.

The job itself is `embedlab.jobs.mine.run`.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from embedlab.cli.common import run_hydra_job
from embedlab.config.build import CONF_DIR
from embedlab.jobs.mine import run

log = logging.getLogger("embedlab.mine")


@hydra.main(config_path=str(CONF_DIR), config_name="mine", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(run, cfg, log)


if __name__ == "__main__":
    main()
