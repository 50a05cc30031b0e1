"""Every benchmark script imports: they share helpers (bench/common.py, train_throughput's batches and optimizer
settings), and a renamed helper once broke token_budget.py unnoticed until a long run started."""

from __future__ import annotations

import importlib
import re
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


def test_the_rerun_driver_passes_only_flags_its_scripts_define() -> None:
    """bench/rerun_all.sh runs for hours unattended: a misspelt flag would only show when its turn came."""
    entries = re.findall(r'^\s*"(\w+)\|\d+\|(.*)"$', (BENCH / "rerun_all.sh").read_text(), flags=re.M)
    assert len(entries) >= 10
    for name, command in entries:
        script = re.search(r"bench/(\w+)\.py", command).group(1)
        defined = set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', (BENCH / f"{script}.py").read_text()))
        used = set(re.findall(r"(--[\w-]+)", command))
        assert used <= defined, f"{name}: bench/{script}.py has no {sorted(used - defined)}"
