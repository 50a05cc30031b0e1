#!/usr/bin/env bash
# KaLM-Embedding-V2-style ablation: InfoNCE vs focal InfoNCE (γ) vs InfoNCE + online hard-negative mixing.
#   SciFact leg: SciFact train -> SciFact test at experiments/focal_sweep.sh's budget (28 steps of 32 pairs, precision auto),
#     so the mixing runs join that sweep's InfoNCE and focal γ=1,2 runs in one report. The overrides are the focal
#     sweep's, spelled out (they resolve to experiment=kalm_v2) so the report names configurations alike.
#   GenQ leg: BEIR's generated ArguAna queries -> SciFact test queries, zero-shot (experiment=kalm_v2_genq: 80
#     steps, chosen by the dev pilot below; 1,000-document SciFact corpus: see that file).
#   GenQ dev pilot (LEGS=genq_dev, not in the default legs): the InfoNCE arm, seed 0, at each step count of
#     DEV_STEPS, evaluated on 200 dev claims carved from SciFact *train* (experiments/scifact_data.py), never on
#     test. Choose the genq budget from it (trainer.max_steps in kalm_v2_genq.yaml), then run the genq leg.
# Runs go seed by seed (all arms of seed 0 first), so a cut-short session still leaves comparable arms; a run whose
# folder already holds a manifest is skipped, so rerunning resumes.
#   bash experiments/kalm_v2.sh [output dir] [focal sweep dir]   (SEEDS="0 1", LEGS=genq: a subset)
#   LEGS=genq_dev bash experiments/kalm_v2.sh [output dir]   (the step-count pilot, on dev; DEV_STEPS="20 40 80")
set -euo pipefail
OUT=${1:-outputs/kalm_v2}
FOCAL=${2:-outputs/focal_sweep}
BIN=${BIN:-.venv/bin}
COMMON=(logger=csv export=false)
MIX=loss.infonce.hn_mixing.enabled=true
FOCAL1=(loss=focal_infonce loss.focal_infonce.gamma=1)

run() {  # run <dir> <overrides...>: one job of a multirun, so Hydra records the overrides as the focal sweep's
    local dir=$1  #   (a multirun writes export=False where a single run keeps export=false; the report names by them)
    shift
    [[ -f $dir/manifest.json ]] && return 0
    "$BIN/embedlab-train" -m "$@" hydra.sweep.dir="$(dirname "$dir")" hydra.sweep.subdir="$(basename "$dir")"
}

LEGS=" ${LEGS:-scifact genq} "  # padded: a leg is matched as a whole word (genq is not genq_dev)
if [[ $LEGS == *" genq_dev "* ]]; then
    DEV_ROOT="$OUT/data"  # SciFact train split into fit/dev claims (hash of the query id), other tasks linked
    "$BIN/python" experiments/scifact_data.py "$DEV_ROOT" --dev 200
    for steps in ${DEV_STEPS:-20 40 80}; do
        run "$OUT/genq_dev/steps_$steps/0" experiment=kalm_v2_genq trainer.max_steps="$steps" seed=0 \
            data.root="$DEV_ROOT" eval.split=dev
    done
    # each run's results.json holds the untrained ("student (before)") and trained dev scores: pick the budget there
    "$BIN/embedlab-report" "$OUT/genq_dev" --task scifact --metric ndcg_at_10 --out "$OUT/report_genq_dev"
fi
for seed in ${SEEDS:-0 1 2}; do
    if [[ $LEGS == *" scifact "* ]]; then
        run "$OUT/scifact/mixing/$seed" seed="$seed" "$MIX" "${COMMON[@]}"
    fi
    if [[ $LEGS == *" genq "* ]]; then
        run "$OUT/genq/infonce/$seed" experiment=kalm_v2_genq seed="$seed"
        run "$OUT/genq/focal/$seed" experiment=kalm_v2_genq "${FOCAL1[@]}" seed="$seed"
        run "$OUT/genq/mixing/$seed" experiment=kalm_v2_genq "$MIX" seed="$seed"
    fi
done

METRICS=(--task scifact --metric ndcg_at_10 --metric recall_at_100 --baseline loss=infonce)
if [[ $LEGS == *" scifact "* ]]; then
    "$BIN/embedlab-report" "$FOCAL/infonce" "$FOCAL/focal" "$OUT/scifact" "${METRICS[@]}" --out "$OUT/report_scifact"
fi
if [[ $LEGS == *" genq "* ]]; then
    "$BIN/embedlab-report" "$OUT/genq" "${METRICS[@]}" --vs-before --out "$OUT/report_genq"  # vs-before: any transfer?
fi
