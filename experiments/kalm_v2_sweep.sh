#!/usr/bin/env bash
# KaLM-V2's components where they could help: focal γ ∈ {0.5, 1, 2}, negative-negative mixes, query mixes capped
# below the positive (hn_mixing.query_cap_margin), and the number of synthetics, each against plain InfoNCE, in the
# paper's training form (conf/experiment/kalm_v2_sweep.yaml): 7 negatives per query mined from ranks 50-100 of the
# untrained student, 256 queries per step through GradCache (2,048 documents in the pool), SciFact fit claims.
#   Dev phase (seed 0, eval.split=dev: 200 claims carved from SciFact train, never test):
#     1. learning rate of the InfoNCE baseline, LRS (2e-5 1e-4): 256-pair steps want more than kalm_v2's 2e-5;
#     2. synthetics per kind and query, NUMS (4 16), for each mixing arm at that rate.
#   Test phase (SEEDS 0 1 2, SciFact test): infonce, focal γ = 0.5/1/2, mix_negatives, mix_query_capped (with the
#     dev-chosen rate and numbers), then embedlab-report: paired randomization test vs loss=infonce over the 300 test
#     queries, p raw and Holm-adjusted over the table's tests; each run's logs/ hold per-step infonce/positive_rank,
#     synthetic_rank and synthetic_outranks_pos (the evidence of what the synthetic block did).
# Budget (the recipe's), chosen to fit 2 cores: training texts cut to 128 tokens (evaluation keeps the model's 256),
# 2 epochs = 4 steps of 256 pairs (1,024 pairs, 9,216 texts through the encoder, twice with GradCache).
# Cost, estimated from smoke runs (1 step each, experiments/README.md "KaLM-V2 sweep"; not a timed full run): one
# GradCache step of 256 pairs at 128 tokens ≈ 235 CPU-s single-threaded, mining (cached corpus) + setup ≈ 25 s,
# encoding the 5,183 SciFact abstracts for evaluation ≈ 210 CPU-s: ≈ 20 CPU-min per run. The sweep's 24 runs (6 dev,
# 18 test) ≈ 8 h on one core, ≈ 4.5-5 h on 2 idle cores if the second thread gives ~1.7x. Subsets: the dev phase
# always runs (6 runs, ≈ 1.2 h on 2 cores); SEEDS="0" ≈ 2.3 h in all; ARMS="infonce mix_query_capped" for two arms.
# The first run also encodes the corpus with the untrained student once (≈ 210 CPU-s, cached for the others).
# Runs whose folder holds manifest.json (written last) are skipped, so rerunning resumes. Two copies started side
# by side (one per core, e.g. `taskset -c 0` / `taskset -c 1`, OMP_NUM_THREADS=1) share the runs (experiments/claim.sh).
#   bash experiments/kalm_v2_sweep.sh [output dir]
set -euo pipefail
source "$(dirname "$0")/claim.sh"
OUT=${1:-outputs/kalm_v2_sweep}
BIN=${BIN:-.venv/bin}
DATA="$OUT/data"
"$BIN/python" experiments/scifact_data.py "$DATA" --dev 200

run() {  # run <dir> <overrides...>: one training run, skipped when finished
    local dir=$1
    shift
    claim "$dir" "$dir/manifest.json" || return 0  # finished, or the other copy is running it
    "$BIN/embedlab-train" experiment=kalm_v2_sweep data.root="$DATA" "$@" hydra.run.dir="$dir"
    release
}
dev_score() {  # dev_score <run dir>: SciFact dev nDCG@10 of a finished run (waits for the other copy's)
    settled "$1"
    "$BIN/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["scifact"]["ndcg_at_10"])' "$1/metrics.json"
}
best() {  # best <dir prefix> <values...>: the value whose dev run <prefix><value> scores highest (first on ties)
    local prefix=$1 top="" score=-1
    shift
    for v in "$@"; do
        s=$(dev_score "$prefix$v")
        if "$BIN/python" -c 'import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))' "$s" "$score"; then
            top=$v score=$s
        fi
    done
    echo "$top"
}

MIX=(loss=infonce loss.infonce.hn_mixing.enabled=true)
declare -A KIND=([negatives]="loss.infonce.hn_mixing.kinds=[negatives]"
                 [query_capped]="loss.infonce.hn_mixing.kinds=[query] loss.infonce.hn_mixing.query_cap_margin=0.05")
# --- dev phase: every choice on SciFact dev claims, seed 0 ---
for lr in ${LRS:-2e-5 1e-4}; do
    run "$OUT/dev/lr_$lr" loss=infonce optim.lr="$lr" seed=0 eval.split=dev
done
LR=$(best "$OUT/dev/lr_" ${LRS:-2e-5 1e-4})
declare -A NUM
for kind in negatives query_capped; do
    for num in ${NUMS:-4 16}; do
        # shellcheck disable=SC2086  # KIND holds several overrides
        run "$OUT/dev/mix_${kind}_num$num" "${MIX[@]}" ${KIND[$kind]} loss.infonce.hn_mixing.num="$num" \
            optim.lr="$LR" seed=0 eval.split=dev
    done
    NUM[$kind]=$(best "$OUT/dev/mix_${kind}_num" ${NUMS:-4 16})
done
echo "chosen on dev: lr $LR, synthetics per query: negatives ${NUM[negatives]}, query_capped ${NUM[query_capped]}" |
    tee "$OUT/dev_choices.txt"
# --- test phase: the report's runs, seed by seed (a cut-short run still leaves comparable arms) ---
for seed in ${SEEDS:-0 1 2}; do
    for arm in ${ARMS:-infonce focal0.5 focal1 focal2 mix_negatives mix_query_capped}; do
        case $arm in
            infonce) args=(loss=infonce) ;;
            focal*) args=(loss=focal_infonce "loss.focal_infonce.gamma=${arm#focal}") ;;
            mix_*) kind=${arm#mix_}
                   # shellcheck disable=SC2206  # KIND holds several overrides
                   args=("${MIX[@]}" ${KIND[$kind]} loss.infonce.hn_mixing.num="${NUM[$kind]}") ;;
            *) echo "unknown arm $arm" >&2; exit 2 ;;
        esac
        run "$OUT/test/$arm/$seed" "${args[@]}" optim.lr="$LR" seed="$seed"
    done
done
for lock in "$OUT"/test/*/*.lock; do settled "${lock%.lock}"; done  # the other copy's last runs
"$BIN/embedlab-report" "$OUT/test" --task scifact --metric ndcg_at_10 --metric recall_at_100 --baseline loss=infonce \
    --log-metric positive_rank --log-metric synthetic_rank --log-metric synthetic_outranks_pos --out "$OUT/report"
