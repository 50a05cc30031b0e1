#!/usr/bin/env bash
# Every bench/README.md table re-run under the like-for-like rules, one after another, on a machine left quiet
# (nothing else running: the times are wall clock). Each benchmark's output goes to <out>/<name>.txt, written only
# when it finishes, so rerunning the script resumes after the last finished one. Total ~5.5 h on 2 cores (the minutes
# below add up to 328: what each took on 2026-12-06/07).
#   bash bench/rerun_all.sh [out dir] [names...]      (default out: outputs/bench_rerun; names: a subset, in order)
# The issue's targets are for a 2-core AVX2-only CPU in fp32, so AVX2=1 (the default) caps torch at AVX2
# (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2); AVX2=0 runs the CPU natively. Each script prints its own header
# (commit, CPU model, torch capability, threads, versions); this adds the load average before and after.
# CORE=N runs every benchmark on that one core with one thread (taskset, OMP_NUM_THREADS=1), so that the other core
# can run an experiment meanwhile: ratios against the peer still compare like with like (both sides on the same
# core, turns alternating), absolute figures are one core's. encode_ranks (two processes) needs both and is skipped.
set -euo pipefail
OUT=${1:-outputs/bench_rerun}
shift || true
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
if [[ ${AVX2:-1} == 1 ]]; then
    export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
fi
export HF_HUB_OFFLINE=1 PYTHONPATH=.

# ONNX Runtime and OpenVINO pick their kernels from CPUID and cannot be capped to AVX2: the frozen-pass entries run
# torch natively too ($NATIVE), so that every contender uses the same ISA.
NATIVE="env -u ONEDNN_MAX_CPU_ISA -u ATEN_CPU_CAPABILITY"

# name | minutes (2 quiet cores) | command -- the commands bench/README.md quotes as "to be re-run with". A command
# starting with "1core" is single-threaded by design: one thread pinned to core ${CORE:-0}.
BENCHES=(
    "precision|2|$PY bench/precision.py --repeats 3"
    "optimizer_step|5|1core $PY bench/optimizer_step.py --repeats 5"
    "token_budget|45|1core $PY bench/token_budget.py --steps 4 --warmup 1 --batch-size 64 --max-length 256 --chunk-tokens 2048 --repeats 3 --grouping random,length"
    "train_throughput|25|$PY bench/train_throughput.py --steps 15 --warmup 3 --batch-size 32 --max-length 128 --precision fp32 --repeats 3"
    "gradcache|20|$PY bench/train_throughput.py --losses gradcache --batch-size 64 --chunk-size 16 --max-length 128 --steps 6 --warmup 2 --repeats 3"
    "memory|25|$PY bench/memory.py --repeats 3 --out $OUT/memory"
    # --skip-bf16: bf16 against fp32 is precision.py's table; AVX2-capped, bf16 is emulated (~4x slower, +40 min)
    "eval_speed|36|$PY bench/eval_speed.py --repeats 3 --skip-bf16"
    "mine_speed|35|$PY bench/mine_speed.py --repeats 3"
    "encode_ranks|40|env OMP_NUM_THREADS=1 $PY bench/encode_ranks.py --world 2 --threads 1 --repeats 3"
    "frozen_pass_minilm|55|$NATIVE $PY bench/frozen_pass.py --models minilm"
    "frozen_pass_mpnet|10|$NATIVE $PY bench/frozen_pass.py --limit 96 --models mpnet"
    "compile_step|30|$PY bench/compile_step.py --steps 10 --repeats 3 --batch-size 32 --max-length 128 --precision fp32"
)
1core() {  # 1core <command...>: one thread on core ${CORE:-0}
    env OMP_NUM_THREADS=1 taskset -c "${CORE:-0}" "$@"
}

wanted=" $* "
for entry in "${BENCHES[@]}"; do
    IFS='|' read -r name minutes command <<<"$entry"
    [[ $# -gt 0 && $wanted != *" $name "* ]] && continue
    if [[ -s "$OUT/$name.txt" ]]; then
        echo "$name: finished ($OUT/$name.txt)"
        continue
    fi
    if [[ -n ${CORE:-} ]]; then
        [[ $name == encode_ranks ]] && { echo "$name: skipped (CORE=$CORE: it needs two cores)"; continue; }
        [[ $command == 1core* ]] || command="1core $command"
    fi
    echo "$name: ~$minutes min: $command"
    {
        echo "# $command${CORE:+  (1core: one thread on core $CORE, the other core running other work)}"
        echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
        $command
        echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    } >"$OUT/$name.txt.part" 2>"$OUT/$name.log"
    mv "$OUT/$name.txt.part" "$OUT/$name.txt"
done
