#!/usr/bin/env bash
# Resume after kill, on a real run: all-MiniLM-L6-v2 fine-tuned with InfoNCE on SciFact train (28 steps of 32
# pairs, precision auto, a checkpoint every 5 steps), evaluated on SciFact test. Once uninterrupted; once killed
# twice from outside at whatever step it has reached — SIGKILL after the step-10 checkpoint exists, SIGTERM after the
# step-20 one — and resumed each time with resume=<run dir>. Prints both runs' metrics and the exported weights'
# hashes; exits 1 unless they are identical.
#   bash experiments/resume_check.sh [output dir]
set -euo pipefail
OUT=${1:-outputs/resume_check}
BIN=${BIN:-.venv/bin}
ARGS=(seed=0 logger=csv checkpoint.every_n_steps=5)
rm -rf "$OUT" && mkdir -p "$OUT"

"$BIN/embedlab-train" "${ARGS[@]}" hydra.run.dir="$OUT/uninterrupted" > "$OUT/uninterrupted.log" 2>&1

# Start a run (first argument: log name, then extra overrides) and send it $SIGNAL once $FILE exists.
interrupt() {
    local log=$1 signal=$2 file=$3; shift 3
    "$BIN/embedlab-train" "${ARGS[@]}" "$@" > "$OUT/$log.log" 2>&1 &
    local pid=$!
    until [ -e "$file" ] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    kill -s "$signal" "$pid" 2>/dev/null || true
    local rc=0; wait "$pid" || rc=$?
    echo "$log: $signal after $(basename "$file") -> exit $rc; checkpoints: $(ls "$OUT/interrupted/checkpoints" | tr '\n' ' ')"
}
RUN="$OUT/interrupted"
interrupt part1 KILL "$RUN/checkpoints/step_10.ckpt" hydra.run.dir="$RUN"
interrupt part2 TERM "$RUN/checkpoints/step_20.ckpt" resume="$RUN"
"$BIN/embedlab-train" "${ARGS[@]}" resume="$RUN" > "$OUT/part3.log" 2>&1
grep -h "resuming from\|SIGTERM" "$OUT"/part*.log | sed 's/^\[[^]]*\]//'

status=0
for run in uninterrupted interrupted; do
    echo "$run: $(tr -d ' \n' < "$OUT/$run/metrics.json")"
    echo "$run: weights sha256 $(sha256sum "$OUT/$run/model/model.safetensors" | cut -c1-16)"
done
cmp -s "$OUT/uninterrupted/metrics.json" "$OUT/interrupted/metrics.json" || status=1
cmp -s "$OUT/uninterrupted/model/model.safetensors" "$OUT/interrupted/model/model.safetensors" || status=1
echo "identical: $([ $status = 0 ] && echo yes || echo NO)"
exit $status
