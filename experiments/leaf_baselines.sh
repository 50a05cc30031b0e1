# Sourced by leaf_teacher.sh and leaf_steps.sh (after claim.sh): the baselines a LEAF student is compared with, run
# on the script's own commit. `leaf_baselines <out> <data root>` writes
#   <out>/baselines/shipped_dev          all-MiniLM-L6-v2 as released, on SciFact dev (does the teacher beat it there?)
#   <out>/baselines/shipped              the same on SciFact test + STSb, as the LEAF runs evaluate their student
#   <out>/baselines/finetune/0-2         MiniLM fine-tuned on the teacher's labels with the teacher's recipe (686 fit
#                                        pairs, one epoch of 21 steps, InfoNCE, lr 2e-5; tests/test_experiment_configs.py
#                                        checks the two recipes differ only in model and evaluation)
# Finished runs (manifest.json, written last) are skipped; two copies of a script share the runs.
leaf_baselines() {
    local out=$1 data=$2 run seed
    run="$out/baselines/shipped_dev"
    if claim "$run" "$run/manifest.json"; then
        "$BIN/embedlab-eval" model=minilm "tasks=[scifact]" eval.split=dev data.root="$data" hydra.run.dir="$run"
        release
    fi
    run="$out/baselines/shipped"
    if claim "$run" "$run/manifest.json"; then
        "$BIN/embedlab-eval" model=minilm "tasks=[scifact,stsb]" data.root="$data" hydra.run.dir="$run"
        release
    fi
    for seed in 0 1 2; do
        run="$out/baselines/finetune/$seed"
        if claim "$run" "$run/manifest.json"; then
            "$BIN/embedlab-train" seed=$seed logger=csv data.root="$data" data.split=fit "eval.tasks=[scifact,stsb]" \
                eval.before_training=false export=false hydra.run.dir="$run"
            release
        fi
    done
}
