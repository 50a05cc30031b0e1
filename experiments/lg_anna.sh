#!/usr/bin/env bash
# LG-ANNA-style recipe vs its in-batch arm (same decoder, pooling, prompt, LoRA, budget), SciFact subset.
#   bash experiments/lg_anna.sh [output dir] [seeds, e.g. 0,1]      then: embedlab-report <output dir>
set -euo pipefail
OUT=${1:-outputs/lg_anna}
SEEDS=${2:-0}
BIN=${BIN:-.venv/bin}
"$BIN/embedlab-train" -m experiment=lg_anna seed="$SEEDS" mining=none teacher_scores=none loss=infonce data.num_negatives=0 \
    hydra.sweep.dir="$OUT/in_batch"
"$BIN/embedlab-train" -m experiment=lg_anna seed="$SEEDS" hydra.sweep.dir="$OUT/mined_kl"
"$BIN/embedlab-report" "$OUT" --task scifact --metric ndcg_at_10 --baseline "mining=none teacher_scores=none loss=infonce data.num_negatives=0"
