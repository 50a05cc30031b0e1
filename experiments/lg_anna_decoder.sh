#!/usr/bin/env bash
# LG-ANNA's decoder arm on the offline Qwen2.5-0.5B (Qwen2.5-Coder-0.5B-Instruct, `make decoders`), recipe
# conf/experiment/lg_anna_decoder.yaml: LoRA r=16, instruction on queries, MiniLM-mined lists (adaptive margin,
# K = 4), mpnet soft labels over the 5 candidates, KL + InfoNCE, 10 steps × 8 lists of 48 tokens, trained on the
# fit claims (SciFact train minus 200 dev claims). Attention × pooling, seeds 0-2:
#   1 causal + last-token on EOS (LG-ANNA's choice; baseline)   2 causal + mean
#   3 bidirectional + last-token                                4 bidirectional + mean
# Evaluated before and after training on the documented subset (experiments/README.md, "A real decoder as an
# embedder": first 50 SciFact test queries, 150 documents with every judged one kept, 64 tokens per text).
# Nothing is selected, so no dev run; embedlab-report: mean ± std, paired randomization test vs arm 1, Holm.
# Wall time on 2 cores, estimated from a 1-step smoke run (experiments/README.md, "LG-ANNA soft labels on K = 4
# lists"): ~1.5 h in all -- 12 runs of ~5-7 min (10 LoRA steps at ~23 CPU-s, two subset evaluations at ~1 CPU-min);
# once: the GGUF conversion (~3 min) and mpnet's soft labels at 256 tokens (~10 min; shared with lg_anna_lists.sh
# through the embedding cache, the lists being the same MiniLM adaptive mining).
#   make decoders && bash experiments/lg_anna_decoder.sh [output dir] [seeds, e.g. 0,1,2] [extra overrides...]
# Runs already finished (manifest.json, which every job writes last) are skipped on a rerun; the runs go seed by
# seed. Two copies started side by side (one per core, e.g. `taskset -c 0` / `taskset -c 1` with OMP_NUM_THREADS=1)
# share them (experiments/claim.sh).
set -euo pipefail
source "$(dirname "$0")/claim.sh"
OUT=${1:-outputs/lg_anna_decoder}
SEEDS=${2:-0,1,2}
EXTRA=("${@:3}")
BIN=${BIN:-.venv/bin}
DATA="$OUT/data"
"$BIN/python" experiments/scifact_data.py "$DATA" --dev 200
for seed in ${SEEDS//,/ }; do
    n=0
    for attention in causal bidirectional; do
        for pooling in last_token mean; do
            n=$((n + 1))
            dir="$OUT/${n}_${attention}_${pooling}/$seed"
            claim "$dir" "$dir/manifest.json" || continue  # finished, or the other copy is on it
            bidir=$([ "$attention" = bidirectional ] && echo true || echo false)
            eos=$([ "$pooling" = last_token ] && echo true || echo false)  # last-token pooling reads an appended EOS
            nice -n 10 "$BIN/embedlab-train" experiment=lg_anna_decoder data.root="$DATA" seed="$seed" \
                model.bidirectional="$bidir" model.pooling="$pooling" model.append_eos="$eos" "${EXTRA[@]}" \
                hydra.run.dir="$dir"
            release
        done
    done
done
for lock in "$OUT"/*/*.lock; do settled "${lock%.lock}"; done  # the other copy's last runs
# Baseline: the first configuration by path (arm 1, causal + last-token); --vs-before: did 10 steps move each arm.
"$BIN/embedlab-report" "$OUT" --task scifact --metric ndcg_at_10 --vs-before
