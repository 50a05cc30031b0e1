#!/usr/bin/env bash
# LEAF (mpnet -> MiniLM + projection 384->768, the `make demo` recipe) evaluated over a Matryoshka x precision grid
# for every system: does the student keep the teacher's robustness to truncation and quantisation? Writes a run
# directory with heldout_cosine.jsonl and grid.jsonl per system; analyse it with notebooks/leaf_alignment.ipynb.
#   bash experiments/leaf_grid.sh [run dir] [more overrides]
#   bash experiments/leaf_grid.sh outputs/leaf_grid_closed_form trainer.max_steps=0   # closed-form student only
#   EMBEDLAB_RUN=<run dir> jupyter lab notebooks/leaf_alignment.ipynb
set -euo pipefail
OUT=${1:-outputs/leaf_grid}
BIN=${BIN:-.venv/bin}
# experiment=leaf_grid: leaf_demo with export=false, eval.dims=[96,192,384], eval.precisions=[float32,int8,binary]
"$BIN/embedlab-train" experiment=leaf_grid hydra.run.dir="$OUT" "${@:2}"
