"""The jobs besides training, as library calls taking a composed config and a run directory: evaluation, mining,
soft-label scoring, reranker training, the comparison report. The CLIs in embedlab/cli only parse arguments or
compose Hydra config and call these (training jobs are in embedlab/training)."""
