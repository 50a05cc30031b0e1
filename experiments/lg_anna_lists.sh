#!/usr/bin/env bash
# LG-ANNA's soft labels and margins on real lists (issue 19): all-MiniLM-L6-v2 student, the positive + K = 4
# negatives mined by the untrained student, soft labels over all K + 1 candidates (conf/experiment/lg_anna_lists.yaml).
# Arms on SciFact test, seeds 0-2, each one epoch over the fit claims:
#   1 InfoNCE alone, adaptive margin (baseline)      2 InfoNCE alone, relative margin 0.95
#   3 KL + InfoNCE, mpnet soft labels, adaptive      4 KL + InfoNCE, mpnet soft labels, relative
#   5 KL + InfoNCE, reranker soft labels, adaptive   (RERANKER=0 skips it and the reranker)
# The reranker is embedlab-train-reranker's: a MiniLM cross-encoder distilled from mpnet's scores of the fit
# claims' mined lists (no packaged reranker exists offline), so arm 5 asks whether the cross-encoder's reading of
# the same teacher makes better soft labels. The one choice, the KL teacher temperature (TEMPS), is made on the
# 200 dev claims carved from SciFact train (experiments/scifact_data.py), seed 0, arm 3; test only reports.
# Then embedlab-report: mean ± std over seeds, paired randomization test vs arm 1, Holm over the table.
# Wall time on 2 cores, estimated from a 3-step smoke run (experiments/README.md, "LG-ANNA soft labels on K = 4
# lists"): ~3-4 h in all -- 18 training runs (3 dev + 15 test) of ~9-13 min each (17 steps at ~50 CPU-s, then the
# full SciFact test pass), mpnet soft labels at 256 tokens ~10 min per list set (adaptive, relative; cached after),
# the reranker ~6 min. TEMPS=1 (no dev choice) saves ~25 min, RERANKER=0 ~45 min.
#   bash experiments/lg_anna_lists.sh [output dir] [seeds, e.g. 0,1,2] [extra overrides...]
# Runs already finished (manifest.json, which every job writes last) are skipped on a rerun; the test runs go seed
# by seed, so a cut-short sweep still leaves comparable arms. Two copies started side by side (one per core, e.g.
# `taskset -c 0` / `taskset -c 1` with OMP_NUM_THREADS=1) share the runs and the reranker (experiments/claim.sh).
set -euo pipefail
source "$(dirname "$0")/claim.sh"
OUT=${1:-outputs/lg_anna_lists}
SEEDS=${2:-0,1,2}
EXTRA=("${@:3}")
BIN=${BIN:-.venv/bin}
K=${K:-4}  # mined negatives per list
TEMPS=${TEMPS:-0.5,1,2}  # KL teacher temperatures tried on dev
RERANKER=${RERANKER:-1}  # 1 = train the reranker and run arm 5
DATA="$OUT/data"
"$BIN/python" experiments/scifact_data.py "$DATA" --dev 200
COMMON=(experiment=lg_anna_lists data.root="$DATA" data.num_negatives="$K" "${EXTRA[@]}")
run() {  # run <dir> <overrides...>: one training run, skipped when finished or the other copy is on it
    local dir="$OUT/$1"; shift
    claim "$dir" "$dir/manifest.json" || return 0
    nice -n 10 "$BIN/embedlab-train" "${COMMON[@]}" "$@" hydra.run.dir="$dir"
    release
}

# The reranker, from fit claims only: mine as the student's runs do, score with mpnet, distil.
RR="$OUT/reranker"
if [ "$RERANKER" = 1 ] && claim "$RR" "$RR/train/manifest.json"; then
    nice -n 10 "$BIN/embedlab-mine" model=minilm mining=adaptive data.root="$DATA" data.split=fit \
        hydra.run.dir="$RR/mine"
    nice -n 10 "$BIN/embedlab-score" input="$RR/mine/negatives.jsonl" data.root="$DATA" num_negatives="$K" \
        teacher_scores=mpnet hydra.run.dir="$RR/score"
    nice -n 10 "$BIN/embedlab-train-reranker" input="$RR/score/scored.jsonl" base=minilm max_length=256 \
        hydra.run.dir="$RR/train"
    release
fi

# The KL teacher temperature, chosen on dev (seed 0, mpnet soft labels, adaptive margin).
for tt in ${TEMPS//,/ }; do
    run "dev/tt_$tt" seed=0 loss.kl_distill.teacher_temperature="$tt" eval.split=dev
done
for tt in ${TEMPS//,/ }; do settled "$OUT/dev/tt_$tt"; done  # the other copy's dev runs
TT=$("$BIN/python" - "$OUT/dev" <<'PY'
import json, sys
from pathlib import Path

from omegaconf import OmegaConf

rows = []
for metrics in sorted(Path(sys.argv[1]).glob("*/metrics.json")):
    tt = OmegaConf.load(metrics.parent / "config.yaml").loss.kl_distill.teacher_temperature
    rows.append((json.loads(metrics.read_text())["scifact"]["ndcg_at_10"], tt))
    print(f"dev nDCG@10 {rows[-1][0]:.4f} at teacher_temperature {tt}", file=sys.stderr)
print(max(rows)[1])
PY
)
echo "teacher_temperature chosen on dev: $TT" | tee "$OUT/dev_choices.txt"
KL=(loss.kl_distill.teacher_temperature="$TT")

for seed in ${SEEDS//,/ }; do
    run "test/1_infonce_adaptive/$seed" seed="$seed" teacher_scores=none loss=infonce
    run "test/2_infonce_relative/$seed" seed="$seed" teacher_scores=none loss=infonce mining=relative
    run "test/3_kl_mpnet_adaptive/$seed" seed="$seed" "${KL[@]}"
    run "test/4_kl_mpnet_relative/$seed" seed="$seed" "${KL[@]}" mining=relative
    if [ "$RERANKER" = 1 ]; then
        settled "$RR"  # trained by the other copy, maybe
        run "test/5_kl_reranker_adaptive/$seed" seed="$seed" "${KL[@]}" teacher_scores=reranker \
            teacher_scores.teachers.0.model="$RR/train/reranker" teacher_scores.teachers.0.max_length=256
    fi
done
for lock in "$OUT"/test/*/*.lock; do settled "${lock%.lock}"; done  # the other copy's last runs
# Baseline: the first configuration by path (arm 1).
"$BIN/embedlab-report" "$OUT/test" --task scifact --metric ndcg_at_10 --metric recall_at_100
