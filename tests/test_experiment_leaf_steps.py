"""experiments/leaf_steps.sh's orchestration, with the embedlab commands faked: two copies run every dev point and
every test seed once, the choice follows the script's dev rule, and the test runs use the chosen pool and steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "leaf_steps.sh"

# Each fake logs its call; a LEAF run writes the results.json and manifest.json the script reads. Dev scores: the
# longer the better, 45k above 20k, but the 2,560-step runs' held-out cosine falls, so the rule must pick 45k_1280.
FAKE = """#!/usr/bin/env bash
set -euo pipefail
args=" $* "
value() { local v=${args##* $1=}; echo "${v%% *}"; }
case $(basename "$0") in
    embedlab-train|embedlab-eval)
        dir=$(value hydra.run.dir) steps=$(value trainer.max_steps)
        pool=$([[ $args == *" data.sources.1.limit=20000 "* ]] && echo 20k || echo 45k)
        echo "$(basename "$0") ${dir#"$OUT/"} $steps $pool $(value teacher.path)" >> "$LOG"
        mkdir -p "$dir"; sleep 0.2
        [[ $dir == "$OUT"/baselines/* ]] && { echo '{}' > "$dir/manifest.json"; exit 0; }
        asym=$(( steps / 10 + $([ "$pool" = 45k ] && echo 1 || echo 0) ))
        after=$([ "$steps" = 2560 ] && echo 0.4 || echo 0.9)
        echo "{\\"asymmetric\\": {\\"scifact\\": {\\"ndcg_at_10\\": $asym}}, \\
               \\"student\\": {\\"scifact\\": {\\"ndcg_at_10\\": 0.5}}}" > "$dir/results.json"
        summary="{\\"heldout_cosine_before\\": 0.5, \\"heldout_cosine\\": $after}"
        echo "{\\"summary\\": $summary}" > "$dir/manifest.json" ;;
    embedlab-report) echo report >> "$LOG" ;;
    python)
        if [[ $1 != */leaf_teacher_report.py ]]; then exec "$REAL_PYTHON" "$@"; fi  # the dev rule runs for real
        echo "headline ${*:2}" >> "$LOG" ;;
esac
"""


def run_two_copies(tmp_path: Path, **env_vars: str) -> tuple[list[list[str]], Path, Path]:
    """Both copies of the script over fake commands, to the end: (the logged calls, out, the teacher's folder)."""
    bin_dir, src, out, log = tmp_path / "bin", tmp_path / "leaf_teacher", tmp_path / "out", tmp_path / "log"
    bin_dir.mkdir()
    for name in ("embedlab-train", "embedlab-eval", "embedlab-report", "python"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    teacher = src / "pipeline" / "teacher"
    (teacher / "model").mkdir(parents=True)
    (teacher / "manifest.json").write_text("{}")
    env = {**os.environ, "BIN": str(bin_dir), "LOG": str(log), "OUT": str(out), "REAL_PYTHON": sys.executable,
           **env_vars}  # fmt: skip
    script = ["bash", str(SCRIPT), str(out), str(src)]
    copies = [subprocess.Popen(script, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert [c.wait(timeout=120) for c in copies] == [0, 0], [c.stderr.read() for c in copies if c.stderr]
    return [line.split() for line in log.read_text().splitlines()], out, teacher


def trained(lines: list[list[str]], *prefixes: str) -> list[list[str]]:
    """The training runs under these folders: [folder, steps, pool, teacher]."""
    return [line[1:] for line in lines if line[0] == "embedlab-train" and line[1].startswith(prefixes)]


def test_two_copies_run_the_dev_grid_and_the_chosen_point_once(tmp_path: Path) -> None:
    lines, out, teacher = run_two_copies(tmp_path)
    runs = trained(lines, "dev/", "test/")
    model = f"{teacher}/model"
    dev = [[f"dev/{pool}_{steps}", steps, pool, model] for steps in ("2560", "1280", "320") for pool in ("20k", "45k")]
    test = [[f"test/{seed}", "1280", "45k", model] for seed in range(3)]
    assert sorted(runs) == sorted(dev + test)  # each once, by one copy or the other; the test runs at the choice
    assert "chosen on dev: 45k_1280" in (out / "dev_choices.txt").read_text()
    baselines = sorted(line[1] for line in lines if line[1:2] and line[1].startswith("baselines/"))
    assert baselines == ["baselines/finetune/0", "baselines/finetune/1", "baselines/finetune/2",
                         "baselines/shipped", "baselines/shipped_dev"]  # fmt: skip
    headline = [line for line in lines if line[0] == "headline"]
    assert headline == [["headline", str(out), "--leaf", "test", "--teacher", str(teacher), "--name", "leaf_steps"]] * 2


def test_a_dev_only_grid_over_one_pool_stops_at_the_choice(tmp_path: Path) -> None:
    """GRID_POOLS=45k STAGE=dev: the 45k dev points only, the choice written, no test run, baseline or report."""
    lines, out, teacher = run_two_copies(tmp_path, GRID_POOLS="45k", STAGE="dev")
    model = f"{teacher}/model"
    assert sorted(trained(lines, "")) == sorted([f"dev/45k_{n}", n, "45k", model] for n in ("2560", "1280", "320"))
    assert "chosen on dev: 45k_1280" in (out / "dev_choices.txt").read_text()
    assert [line[0] for line in lines if line[0] != "embedlab-train"] == []


def test_without_a_finished_teacher_it_stops_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), str(tmp_path / "nowhere")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr == f"leaf_steps.sh: no finished teacher at {tmp_path}/nowhere/pipeline/teacher -- run "
        f"experiments/leaf_teacher.sh {tmp_path}/nowhere first\n"
    )


def test_the_dev_rule_names_the_choice_by_a_config_key(tmp_path: Path) -> None:
    """leaf_lr_dev.sh's use: the chosen run named by its learning rate; a higher run whose cosine fell is skipped."""
    for name, lr, asym, after in (("0", 1e-5, 0.50, 0.8), ("1", 1e-4, 0.55, 0.8), ("2", 3e-4, 0.60, 0.4)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(f"optim:\n  lr: {lr}\n")
        (run / "results.json").write_text(json.dumps({"asymmetric": {"scifact": {"ndcg_at_10": asym}},
                                                      "student": {"scifact": {"ndcg_at_10": 0.6}}}))  # fmt: skip
        summary = {"heldout_cosine_before": 0.7, "heldout_cosine": after}
        (run / "manifest.json").write_text(json.dumps({"summary": summary}))
    rule = [sys.executable, str(SCRIPT.parent / "leaf_dev_choice.py"), str(tmp_path), "--by", "optim.lr"]
    done = subprocess.run(rule, capture_output=True, text=True, check=True)
    assert done.stdout == "0.0001\n"
