"""Every benchmark script imports: they share helpers (bench/common.py, train_throughput's batches and optimizer
settings), and a renamed helper once broke token_budget.py unnoticed until a long run started."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_benchmark_script_imports(name: str, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    for cached in [m for m in sys.modules if m in SCRIPTS]:
        monkeypatch.delitem(sys.modules, cached)
    module = importlib.import_module(name)
    assert callable(getattr(module, "main", None)) or name == "common", f"bench/{name}.py has no main()"
