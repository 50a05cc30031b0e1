#!/usr/bin/env bash
# Model soup (Wortsman et al. 2022; KaLM-V2's last stage): four MiniLM fine-tunes from the same start, differing in
# seed and learning rate, averaged uniformly and greedily; every system evaluated on SciFact test (nDCG@10).
# Greedy selection uses a dev split carved out of SciFact *train* (200 claims, never trained on, never test).
#   bash experiments/soup.sh [output dir]        (runs already finished are skipped)
set -euo pipefail
OUT=${1:-outputs/soup}
PY=${PY:-.venv/bin/python}
DATA="$OUT/data"
$PY experiments/scifact_data.py "$DATA" --dev 200
# Training and evaluation as in focal_sweep.sh: one epoch (21 steps of 32 pairs), bf16 autocast, bf16 encoding.
COMMON=(data.root="$DATA" data.split=fit model.precision=bf16 trainer.precision=bf16-mixed logger=csv
        eval.before_training=false)
INGREDIENTS=()
for spec in 0:2e-5 1:3e-5 2:5e-5 3:1e-4; do
    seed=${spec%%:*} lr=${spec#*:}
    run="$OUT/ingredients/s${seed}_lr${lr}"
    if [[ ! -f "$run/metrics.json" || ! -f "$run/model/modules.json" ]]; then
        nice -n 10 $PY -m embedlab.cli.train seed="$seed" optim.lr="$lr" "${COMMON[@]}" hydra.run.dir="$run"
    fi
    INGREDIENTS+=("$run/model")
done
LIST=$(IFS=,; echo "${INGREDIENTS[*]}")
for method in uniform greedy; do
    nice -n 10 $PY -m embedlab.cli.soup method=$method "models=[$LIST]" data.root="$DATA" model.precision=bf16 \
        dev.split=dev eval.tasks=[scifact] hydra.run.dir="$OUT/$method"
done
