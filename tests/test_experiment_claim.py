"""experiments/claim.sh: two copies of one experiment script share its runs, each run done exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLAIM = Path(__file__).resolve().parents[1] / "experiments" / "claim.sh"

# A sweep in miniature: each run appends the copy's name to a log and takes a moment, so the two copies overlap; a
# last step reads every run after the other copy's have ended, as kalm_v2_sweep.sh reads dev scores.
SWEEP = f"""
set -euo pipefail
source {CLAIM}
out=$1 me=$2
for run in a b c d e f; do
    claim "$out/$run" "$out/$run/done" || continue
    mkdir -p "$out/$run"; echo "$me" >> "$out/$run/log"; sleep 0.3; touch "$out/$run/done"
    release
done
for run in a b c d e f; do settled "$out/$run"; [ -f "$out/$run/done" ]; done
echo "$me saw all"
"""


def _start(out: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["bash", "-c", SWEEP, "sweep", str(out), name], stdout=subprocess.PIPE, text=True)


def test_two_copies_split_the_runs_and_each_waits_for_the_others(tmp_path: Path) -> None:
    copies = [_start(tmp_path, "one"), _start(tmp_path, "two")]
    outputs = [c.communicate(timeout=60)[0] for c in copies]
    assert [c.returncode for c in copies] == [0, 0]
    assert outputs == ["one saw all\n", "two saw all\n"]
    logs = {run: (tmp_path / run / "log").read_text().split() for run in "abcdef"}
    assert all(len(names) == 1 for names in logs.values()), logs  # no run twice
    assert {names[0] for names in logs.values()} == {"one", "two"}  # both copies worked


def test_a_killed_copy_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(["bash", "-c", f"source {CLAIM}; claim {tmp_path}/a {tmp_path}/a/done && exec sleep 30"])
    try:
        probe = f"source {CLAIM}; sleep 0.5; claim {tmp_path}/a {tmp_path}/a/done && echo free || echo held"
        assert subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout == "held\n"
    finally:
        holder.kill()
        holder.wait()
    probe = f"source {CLAIM}; claim {tmp_path}/a {tmp_path}/a/done && echo free || echo held"
    assert subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout == "free\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "done").touch()  # a finished run is never claimed again
    assert subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout == "held\n"


# The embedlab commands as lg_anna_lists.sh calls them, faked to test the script's orchestration alone: each logs its
# run, a training run writes the config.yaml and metrics.json the script reads (dev nDCG@10 highest at teacher
# temperature 2) and then, last, manifest.json (a run's done mark), and a run with the reranker's soft labels fails
# unless the reranker is there.
FAKE = """#!/usr/bin/env bash
set -euo pipefail
args=" $* "
value() { local v=${args##* $1=}; echo "${v%% *}"; }
case $(basename "$0") in
    embedlab-train)
        dir=$(value hydra.run.dir) tt=$(value loss.kl_distill.teacher_temperature)
        reranker=$(value teacher_scores.teachers.0.model)
        [[ $args == *" teacher_scores=reranker "* ]] && [ ! -f "$reranker/config.json" ] && exit 3  # no reranker
        [[ $args == *" loss.kl_distill.teacher_temperature="* ]] || tt=none
        echo "train $dir $tt" >> "$LOG"; mkdir -p "$dir"
        [[ $args == *" eval.split=dev "* ]] && sleep "$DEV_SECONDS" || sleep 0.2
        printf 'loss:\\n  kl_distill:\\n    teacher_temperature: %s\\n' "$tt" > "$dir/config.yaml"
        score=$([ "$tt" = 2 ] && echo 0.7 || echo 0.5)
        echo "{\\"scifact\\": {\\"ndcg_at_10\\": $score}}" > "$dir/metrics.json"
        echo '{}' > "$dir/manifest.json" ;;
    embedlab-train-reranker)
        sleep "$RERANKER_SECONDS"; mkdir -p "$(value hydra.run.dir)/reranker"
        touch "$(value hydra.run.dir)/reranker/config.json" "$(value hydra.run.dir)/manifest.json"
        echo reranker >> "$LOG" ;;
    embedlab-report) echo report >> "$LOG" ;;
esac
"""


# Timings that make one copy reach a step while the other still holds what it needs: the dev choice (the reranker
# is quick, so its copy finds a dev run held), then the reranker (slow, so the other copy reaches arm 5 first).
@pytest.mark.parametrize(("reranker_seconds", "dev_seconds"), [(0.5, 1.0), (5.0, 0.2)])
def test_lg_anna_lists_two_copies_run_everything_once_and_choose_on_all_of_dev(
    tmp_path: Path, real_data: Path, reranker_seconds: float, dev_seconds: float
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = dict.fromkeys(
        ["embedlab-train", "embedlab-mine", "embedlab-score", "embedlab-train-reranker", "embedlab-report"], FAKE
    )
    for name, text in {**fakes, "python": f'#!/bin/sh\nexec "{sys.executable}" "$@"\n'}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log, out = tmp_path / "log", tmp_path / "out"
    env = {
        **os.environ,
        "BIN": str(bin_dir),
        "LOG": str(log),
        "EMBEDLAB_DATA": str(real_data),
        "TEMPS": "0.5,1,2",
        "RERANKER_SECONDS": str(reranker_seconds),
        "DEV_SECONDS": str(dev_seconds),
    }
    data = [str(bin_dir / "python"), str(CLAIM.parent / "scifact_data.py"), str(out / "data"), "--dev", "200"]
    subprocess.run(data, env=env, check=True, capture_output=True)  # once, before the copies (they rewrite it)
    stopped = out / "test" / "2_infonce_relative" / "1"  # a run killed after its metrics, before its run record
    stopped.mkdir(parents=True)
    (stopped / "metrics.json").write_text('{"scifact": {"ndcg_at_10": 0.5}}')
    script = ["bash", str(CLAIM.parent / "lg_anna_lists.sh"), str(out), "0,1"]
    copies = [subprocess.Popen(script, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert [c.wait(timeout=120) for c in copies] == [0, 0], [c.stderr.read() for c in copies if c.stderr]

    lines = log.read_text().splitlines()
    trained = [line.split()[1:] for line in lines if line.startswith("train")]
    arms = [
        "1_infonce_adaptive",
        "2_infonce_relative",
        "3_kl_mpnet_adaptive",
        "4_kl_mpnet_relative",
        "5_kl_reranker_adaptive",
    ]
    assert sorted(d.removeprefix(f"{out}/") for d, _ in trained) == sorted(
        [f"dev/tt_{t}" for t in ("0.5", "1", "2")] + [f"test/{arm}/{seed}" for arm in arms for seed in (0, 1)]
    )  # every run once, by one copy or the other, the stopped one included
    assert {tt for d, tt in trained if "/test/3_" in d or "/test/5_" in d} == {"2"}  # both chose on all of dev
    assert lines.count("reranker") == 1 and lines[-2:] == ["report", "report"]
