"""Training jobs as library calls: `train` (prepare → fit → evaluate → export), model soups, multi-stage
pipelines. The CLIs in embedlab/cli only compose Hydra config and call these."""

from embedlab.training.train import train

__all__ = ["train"]
