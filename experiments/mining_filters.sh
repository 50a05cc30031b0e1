#!/usr/bin/env bash
# Negative-selection filters side by side: all-MiniLM-L6-v2 mines SciFact train queries (ranks 1-100, 8 negatives)
# with window-only, relative 0.95, absolute 0.05 and adaptive margins. The first run encodes the corpus; the others
# read it from the embedding cache. Prints kept-negative counts and the false-negative rate of each.
#   bash experiments/mining_filters.sh [output dir]
set -euo pipefail
OUT=${1:-outputs/mining_filters}
BIN=${BIN:-.venv/bin}
for preset in window relative absolute adaptive; do
    "$BIN/embedlab-mine" mining="$preset" hydra.run.dir="$OUT/$preset" > "$OUT.$preset.log" 2>&1 \
        || { tail -20 "$OUT.$preset.log"; exit 1; }
done
"$BIN/python" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from embedlab.report.table import format_table
rows = []
for preset in ("window", "relative", "absolute", "adaptive"):
    report = json.loads((Path(sys.argv[1]) / preset / "mining_report.json").read_text())
    c, fn = report["counts"], report["false_negatives"]
    rows.append({
        "filter": preset, "queries": c["queries"], "dropped by margin": c["dropped_margin"], "eligible": c["eligible"],
        "sampled": c["sampled"], "queries short": c["queries_short"], "hidden positives": fn.get("hidden_positives"),
        "false negatives": fn.get("false_negatives"), "FN rate": fn.get("false_negative_rate"),
    })
print(format_table(rows, list(rows[0])))
PY
