"""bench/common.py: the like-for-like rules of issue 17 item 6 — contenders take turns with the order rotating (each
goes first equally often), repeats are summarised by their median with min and max, and the header names the commit
(and uncommitted changes), the CPU and the threads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "common.py"


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("bench_common", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_sides_alternate_abba(common) -> None:
    assert [common.turns(["a", "b"], r) for r in range(4)] == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]


def test_each_side_goes_first_once_per_cycle(common) -> None:
    sides = ["a", "b", "c"]
    orders = [common.turns(sides, r) for r in range(3)]
    assert all(sorted(order) == sides for order in orders)  # every side runs in every repeat
    assert sorted(order[0] for order in orders) == sides  # and each one leads once
    assert sorted(order[-1] for order in orders) == sides


def test_run_rotating_calls_in_turn_and_keeps_results_per_side(common) -> None:
    calls: list[str] = []

    def side(name: str, values: list[float]):
        def run() -> float:
            calls.append(name)
            return values[sum(c == name for c in calls) - 1]

        return run

    results = common.run_rotating({"st": side("st", [1.0, 2.0, 3.0]), "ours": side("ours", [4.0, 5.0, 6.0])}, 3)
    assert calls == ["st", "ours", "ours", "st", "st", "ours"]
    assert results == {"st": [1.0, 2.0, 3.0], "ours": [4.0, 5.0, 6.0]}


def test_spread_is_median_min_max(common) -> None:
    assert common.spread([20.0, 1.0, 10.0, 2.0]) == {"median": 6.0, "min": 1.0, "max": 20.0}
    assert common.spread([3.0, 9.0, 1.0])["median"] == 3.0  # not the mean (4.33) nor the best run
    with pytest.raises(ValueError, match="no runs"):
        common.spread([])


def test_header_names_commit_dirty_state_cpu_and_threads(common, monkeypatch) -> None:
    monkeypatch.setattr(common, "git_state", lambda: {"commit": "0123456789abcdef", "dirty": True})
    monkeypatch.setattr(common, "cpu_model", lambda: "Test CPU 9000")
    line = common.header("numpy")
    assert line.startswith("commit 0123456789 (uncommitted changes); CPU Test CPU 9000, torch capability ")
    assert f"{torch.get_num_threads()} threads" in line
    assert "numpy " in line and "not installed" not in line
    monkeypatch.setattr(common, "git_state", lambda: {"commit": "0123456789abcdef", "dirty": False})
    assert "uncommitted" not in common.header()


def test_encoder_flops_counts_weights_and_attention_per_token(common) -> None:
    """Hand-computed for d=4, ff=8, 2 layers: weights 4·16 + 2·4·8 = 128 per layer; texts of 3 and 1 tokens give
    2·(3+1)·128·2 = 2,048 weight FLOPs and 4·(9+1)·4·2 = 320 attention FLOPs. Padding does not count."""
    config = type("Config", (), {"hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 2})()
    assert common.encoder_flops(config, [3, 1]) == 2048 + 320
    assert common.encoder_flops(config, []) == 0


def test_fp32_peak_is_cores_times_clock_times_flop_per_cycle(common) -> None:
    peak, line = common.fp32_peak(2, clock_ghz=2.5, flop_per_cycle=32)
    assert peak == 160.0
    assert "2 cores × 2.5 GHz × 32 FLOP/cycle = 160.0 GFLOP/s" in line
