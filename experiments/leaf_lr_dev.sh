#!/usr/bin/env bash
# Choose leaf_demo's backbone learning rate on dev, never on SciFact test. leaf_demo's lr was once 1e-5, picked from
# a collapse at 1e-4 seen on SciFact test ("LEAF by hand", experiments/README.md); this reran the choice on 200 dev
# claims carved from SciFact train (experiments/scifact_data.py), which are also removed from the training texts
# (data.sources.0.split=fit), and on STSb's dev pairs. One run per learning rate, the demo's recipe otherwise;
# pick the highest dev asymmetric nDCG@10 (LEAF's use) whose held-out student-teacher cosine did not fall (a
# collapse shows there first), then set optim.lr in conf/experiment/leaf_demo.yaml (1e-4 since 2026-12-06).
#   bash experiments/leaf_lr_dev.sh [output dir]        (LRS=1e-5,3e-5 for other rates)
set -euo pipefail
OUT=${1:-outputs/leaf_lr_dev}
BIN=${BIN:-.venv/bin}
DEV_ROOT="$OUT/data"
"$BIN/python" experiments/scifact_data.py "$DEV_ROOT" --dev 200
"$BIN/embedlab-train" -m experiment=leaf_demo optim.lr="${LRS:-1e-5,3e-5,1e-4}" data.root="$DEV_ROOT" \
    data.sources.0.split=fit eval.split=dev export=false hydra.sweep.dir="$OUT/runs"
LR=$("$BIN/python" "$(dirname "$0")/leaf_dev_choice.py" "$OUT/runs" --by optim.lr)  # the rule above
echo "chosen on dev: lr $LR (highest dev asymmetric nDCG@10, held-out cosine not down)"
