#!/usr/bin/env bash
# KaLM-V2's focal reweighting: InfoNCE vs focal InfoNCE (γ = 1, 2) on SciFact train -> SciFact test, seeds 0-2,
# plus γ = 0 once (it must reproduce InfoNCE bit for bit). One epoch each (28 steps of 32 pairs), precision auto.
#   bash experiments/focal_sweep.sh [output dir]      then: embedlab-report <output dir>
set -euo pipefail
OUT=${1:-outputs/focal_sweep}
BIN=${BIN:-.venv/bin}
COMMON=(logger=csv export=false)
"$BIN/embedlab-train" -m seed=0,1,2 "${COMMON[@]}" hydra.sweep.dir="$OUT/infonce"
"$BIN/embedlab-train" -m loss=focal_infonce loss.focal_infonce.gamma=1,2 seed=0,1,2 "${COMMON[@]}" \
    hydra.sweep.dir="$OUT/focal"
"$BIN/embedlab-train" -m loss=focal_infonce loss.focal_infonce.gamma=0 seed=0 "${COMMON[@]}" \
    hydra.sweep.dir="$OUT/gamma0"
"$BIN/embedlab-report" "$OUT" --task scifact --metric ndcg_at_10 --metric recall_at_100 --baseline loss=infonce
