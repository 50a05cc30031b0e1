#!/usr/bin/env bash
# Model soup (Wortsman et al. 2022; KaLM-V2's last stage): four MiniLM fine-tunes from the same start, differing in
# seed and learning rate, averaged uniformly and greedily; every system evaluated on SciFact test (nDCG@10).
# Every choice uses a dev split carved out of SciFact *train* (200 claims, never trained on, never test): the
# greedy soup's ingredients and the "best single" fine-tune the soups are compared with (recorded runs before
# 2026-12-05 picked the best single on test; experiments/README.md, "Model soup").
#   bash experiments/soup.sh [output dir]        (runs already finished are skipped)
set -euo pipefail
OUT=${1:-outputs/soup}
PY=${PY:-.venv/bin/python}
DATA="$OUT/data"
$PY experiments/scifact_data.py "$DATA" --dev 200
# Training and evaluation as in focal_sweep.sh: one epoch (21 steps of 32 pairs), precision auto (bf16 only where native).
COMMON=(data.root="$DATA" data.split=fit logger=csv
        eval.before_training=false)
INGREDIENTS=()
for spec in 0:2e-5 1:3e-5 2:5e-5 3:1e-4; do
    seed=${spec%%:*} lr=${spec#*:}
    run="$OUT/ingredients/s${seed}_lr${lr}"
    if [[ ! -f "$run/manifest.json" ]]; then
        nice -n 10 $PY -m embedlab.cli.train seed="$seed" optim.lr="$lr" "${COMMON[@]}" hydra.run.dir="$run"
    fi
    INGREDIENTS+=("$run/model")
done
LIST=$(IFS=,; echo "${INGREDIENTS[*]}")
for method in uniform greedy; do
    if [[ ! -f "$OUT/$method/manifest.json" ]]; then
        nice -n 10 $PY -m embedlab.cli.soup method=$method "models=[$LIST]" data.root="$DATA" \
            dev.split=dev eval.tasks=[scifact] hydra.run.dir="$OUT/$method"
    fi
done
# The table: SciFact test nDCG@10 of every system, dev nDCG@10 where measured, and a paired sign-flip randomization
# test (10,000 draws, seed 0) of each soup against the best single fine-tune *on dev* over the 300 test queries.
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from embedlab.report.significance import paired_arrays, randomization_test

out = Path(sys.argv[1])
def test(run): return json.loads((run / "metrics.json").read_text())["scifact"]["ndcg_at_10"]
def per_query(run):
    rows = map(json.loads, (run / "per_query" / "scifact.jsonl").read_text().splitlines())
    return {r["query_id"]: r["ndcg_at_10"] for r in rows}
greedy = json.loads((out / "greedy" / "soup.json").read_text())
dev = {str(Path(i["path"]).parent): i["dev"] for i in greedy["ingredients"]}
singles = sorted((out / "ingredients").iterdir())
best = max(singles, key=lambda run: dev[str(run)])  # chosen on dev, never on test
print(f"{'system':<28} {'test nDCG@10':>12} {'dev nDCG@10':>12}  vs best single on dev ({best.name})")
for run in singles:
    print(f"{run.name:<28} {test(run):>12.4f} {dev[str(run)]:>12.4f}")
for name, dev_score in (("uniform", None), ("greedy", greedy["dev"])):
    a, b = paired_arrays(per_query(best), per_query(out / name), (best.name, name), "scifact")
    d, p = b - a, randomization_test(a, b, resamples=10_000, seed=0).p_value
    kept = json.loads((out / name / "soup.json").read_text())["ingredients"]
    label = f"{name} soup ({sum(i['kept'] for i in kept)} of {len(kept)})"
    dev_cell = f"{dev_score:12.4f}" if dev_score is not None else f"{'-':>12}"
    print(f"{label:<28} {test(out / name):>12.4f} {dev_cell}  {d.mean():+.4f} (p = {p:.2f}, {(d > 0).sum()} better / {(d < 0).sum()} worse)")
PY
