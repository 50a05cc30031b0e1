#!/usr/bin/env bash
# embedlab-report names a configuration by its resolved config, not by the overrides typed: a recipe run
# (experiment=kalm_v2) and the same settings spelled out (logger=csv export=false) land in one row. Short runs
# (3 steps, SciFact test subset) — a check of the grouping, not a result.
#   bash experiments/report_grouping.sh [output dir]
set -euo pipefail
OUT=${1:-outputs/report_grouping}
BIN=${BIN:-.venv/bin}
SHORT=(trainer.max_steps=3 eval.limit=30 eval.max_docs=300 eval.before_training=false)
"$BIN/embedlab-train" experiment=kalm_v2 seed=0 "${SHORT[@]}" hydra.run.dir="$OUT/recipe_seed0"
"$BIN/embedlab-train" experiment=kalm_v2 seed=1 "${SHORT[@]}" hydra.run.dir="$OUT/recipe_seed1"
"$BIN/embedlab-train" logger=csv export=false seed=2 "${SHORT[@]}" hydra.run.dir="$OUT/spelled_out_seed2"
"$BIN/embedlab-train" experiment=kalm_v2 loss=focal_infonce seed=0 "${SHORT[@]}" hydra.run.dir="$OUT/focal_seed0"
"$BIN/embedlab-train" experiment=kalm_v2 loss=focal_infonce seed=1 "${SHORT[@]}" hydra.run.dir="$OUT/focal_seed1"
"$BIN/embedlab-report" "$OUT" --task scifact --metric ndcg_at_10 --no-plots
