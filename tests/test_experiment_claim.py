"""experiments/claim.sh: two copies of one experiment script share its runs, each run done exactly once."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
