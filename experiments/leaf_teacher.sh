#!/usr/bin/env bash
# LEAF from a stronger teacher (issue 19): conf/pipeline/leaf_teacher.yaml -- all-mpnet-base-v2 fine-tuned on the
# SciFact fit claims, then distilled into all-MiniLM-L6-v2 + projection 384->768 on unlabeled texts only (three seeds
# on the whole pool, one run per smaller pool for the curve) -- then the baselines on the same commit and the paired
# comparisons. Choices are made on the 200 SciFact dev claims (experiments/scifact_data.py); test is only reported.
#   bash experiments/leaf_teacher.sh [output dir]        (finished runs are skipped: rerun to resume)
# Estimated cost on 2 quiet CPU cores (conf/pipeline/leaf_teacher.yaml's breakdown): ~3.2 h with native bf16, ~5.5 h
# AVX2-only fp32 (pipeline ~2.9 / 5 h, baselines ~15-20 min); a shared CPU is 1.5-2x slower.
# Results land in (default <out> = outputs/leaf_teacher):
#   <out>/pipeline/teacher                 the fine-tuned teacher (model/, metrics.json on SciFact dev)
#   <out>/pipeline/leaf/0-2                LEAF on the whole pool, seeds 0-2; leaf/3-6 the curve (pipeline.json)
#   <out>/baselines/shipped{,_dev}         all-MiniLM-L6-v2 as released, on test (+ STSb) and on SciFact dev
#   <out>/baselines/finetune/0-2           MiniLM fine-tuned on the same labels with the teacher's recipe, seeds 0-2
#   <out>/report/                          embedlab-report: every configuration vs the fine-tuned MiniLM, paired
#   <out>/leaf_teacher.md, .json           the headline table (Holm-corrected) and the curve, also printed
set -euo pipefail
source "$(dirname "$0")/claim.sh"
source "$(dirname "$0")/leaf_baselines.sh"
OUT=${1:-outputs/leaf_teacher}
BIN=${BIN:-.venv/bin}
DATA="$OUT/data"
"$BIN/python" experiments/scifact_data.py "$DATA" --dev 200
"$BIN/embedlab-pipeline" leaf_teacher out="$OUT/pipeline" data_root="$DATA"

leaf_baselines "$OUT" "$DATA"  # the shipped MiniLM (dev, test) and MiniLM fine-tuned on the same labels

# Every LEAF configuration's student (symmetric) against the fine-tuned MiniLM (the first row by path: the baseline),
# randomization test over the 300 SciFact test queries, seeds averaged per query; raw p (Holm: leaf_teacher.md).
"$BIN/embedlab-report" "$OUT/baselines/finetune" "$OUT/baselines/shipped" "$OUT/pipeline/leaf" --task scifact \
    --metric ndcg_at_10 --metric recall_at_100 --out "$OUT/report"

# The headline (whole pool, seeds 0-2): student and asymmetric pair against the shipped and the fine-tuned MiniLM,
# the teacher against the shipped MiniLM, Holm over these five tests; share of the teacher; then the curve.
"$BIN/python" experiments/leaf_teacher_report.py "$OUT"
