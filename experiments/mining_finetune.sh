#!/usr/bin/env bash
# Does mining help? all-MiniLM-L6-v2 fine-tuned on SciFact train (one epoch, 32 pairs per step, precision auto),
# evaluated on SciFact test, seeds 0-2: in-batch negatives only; + 1 mined negative per pair (ranks 1-100, no
# margin); + relative margin 0.95; + adaptive margin; + kl_distill on mpnet-scored lists of the adaptive mining
# (mpnet, 256 tokens, precision auto).
# Mining runs with the untrained student before training (embedlab-train mining=...).
#   bash experiments/mining_finetune.sh [output dir]      then: embedlab-report <output dir>
set -euo pipefail
OUT=${1:-outputs/mining_finetune}
BIN=${BIN:-.venv/bin}
K=${K:-1}  # mined negatives per pair in training
COMMON=(logger=csv export=false)
# in-batch only is experiments/focal_sweep.sh's infonce row (same settings): reuse it when it is there
if [ -d outputs/focal_sweep/infonce ] && [ ! -d "$OUT/in_batch" ]; then
    mkdir -p "$OUT" && cp -r outputs/focal_sweep/infonce "$OUT/in_batch"
elif [ ! -d "$OUT/in_batch" ]; then
    "$BIN/embedlab-train" -m seed=0,1,2 "${COMMON[@]}" hydra.sweep.dir="$OUT/in_batch"
fi
for preset in window relative adaptive; do
    "$BIN/embedlab-train" -m mining="$preset" data.num_negatives="$K" seed=0,1,2 "${COMMON[@]}" \
        hydra.sweep.dir="$OUT/$preset"
done
# soft labels: mine (adaptive), score the lists with the mpnet bi-encoder, train InfoNCE + KL on them — one command
"$BIN/embedlab-train" -m mining=adaptive teacher_scores=mpnet data.num_negatives="$K" 'loss=[infonce,kl_distill]' \
    seed=0,1,2 "${COMMON[@]}" hydra.sweep.dir="$OUT/kl_distill"
"$BIN/embedlab-report" "$OUT" --task scifact --metric ndcg_at_10
