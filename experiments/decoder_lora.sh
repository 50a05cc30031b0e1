#!/usr/bin/env bash
# A real offline decoder as an embedder: SmolLM2-135M-Instruct (packaged GGUF) + LoRA r=16 on SciFact train pairs,
# causal vs bidirectional attention at the same budget, SciFact test nDCG@10 before/after.
# Sized for a 2-core CPU shared with ~5 other jobs (load average 10-14, so this job gets ~0.2 core): 48 training
# tokens per text, 10 steps of 8 pairs (80 of the 919 pairs), and a documented evaluation subset at 64 tokens per
# text: the first 50 SciFact test queries, corpus capped at 150 documents with every judged one kept. Precision auto. Mean pooling, instruction on queries (conf/model/smollm2_bidir.yaml).
#   bash experiments/decoder_lora.sh [output dir] [seeds, e.g. 0,1] [extra overrides...]
# The untrained student is the base model whatever the seed (fresh LoRA B = 0), so later seeds can skip it:
#   bash experiments/decoder_lora.sh outputs/decoder_lora_s1 1 eval.before_training=false
set -euo pipefail
OUT=${1:-outputs/decoder_lora}
SEEDS=${2:-0}
EXTRA=("${@:3}")
BIN=${BIN:-.venv/bin}
COMMON=(model=smollm2_bidir model.max_length=64 data.max_length=48 data.batch_size=8 trainer.max_steps=10
    optim.lr=3e-4 eval.limit=50 eval.max_docs=150
    logger=csv export=true)
for mode in causal bidirectional; do
    bidir=$([ "$mode" = bidirectional ] && echo true || echo false)
    nice -n 10 "$BIN/embedlab-train" -m seed="$SEEDS" model.bidirectional="$bidir" "${COMMON[@]}" "${EXTRA[@]}" \
        hydra.sweep.dir="$OUT/$mode"
done
"$BIN/embedlab-report" "$OUT" --task scifact --metric ndcg_at_10
