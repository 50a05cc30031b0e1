"""bench/train_throughput.py's StepTimer reads the clock it is given (`--clock cpu` in bench/token_budget.py: CPU
seconds, which other processes on a shared core leave alone), from the warm-up's end to the last step's end."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_step_timer_times_the_steps_after_warmup_with_the_given_clock(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "common", raising=False)  # bench/common.py, not another module of that name
    from train_throughput import PHASES, StepTimer

    ticks = itertools.count(start=100.0, step=10.0)  # each reading is 10 "seconds" after the one before
    timer = StepTimer(warmup=1, clock=lambda: next(ticks))
    for step in range(3):  # a step's readings: start (twice at the first timed one), before/after backward, end
        timer.on_train_batch_start(None, None, None, step)
        timer.on_before_backward(None, None, None)
        timer.on_after_backward(None, None)
        timer.on_train_batch_end(None, None, None, None, step)
    assert (timer.start, timer.end) == (140.0, 220.0)  # step 1's start, step 2's end: the warm-up step left out
    assert timer.phases == dict.fromkeys(PHASES, 20.0)  # two timed steps, 10 per phase each
