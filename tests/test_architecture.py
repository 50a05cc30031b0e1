"""docs/architecture.md's layer table is the code's: every package listed once, every import one way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "embedlab"
ROW = re.compile(r"^\| (\d+) \| `(\w+)` \|")


def layers() -> dict[str, int]:
    """Package -> its row in docs/architecture.md's "Layers" table."""
    rows = [ROW.match(line) for line in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines()]
    return {m.group(2): int(m.group(1)) for m in rows if m}


def top_level(module_path: Path) -> str:
    return module_path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def embedlab_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported top-level package) for every embedlab import in the file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("embedlab."):
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("embedlab.")]
        else:
            continue
        found += [(node.lineno, name.split(".")[1]) for name in names]
    return found


def against_the_grain(order: dict[str, int]) -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        own = top_level(path)
        for line, target in embedlab_imports(path):
            if target != own and order.get(target, 0) >= order.get(own, 0):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({own}, row {order.get(own)}) imports {target}")
    return bad


def test_every_package_is_in_the_layer_table_once() -> None:
    order = layers()
    packages = {p for p in PACKAGE.iterdir() if (p / "__init__.py").exists() or p.suffix == ".py"}
    present = {top_level(p) for p in packages} - {"__init__"}
    assert set(order) == present, f"table only: {set(order) - present}; code only: {present - set(order)}"
    assert sorted(order.values()) == list(range(1, len(order) + 1))


def test_imports_flow_one_way() -> None:
    assert against_the_grain(layers()) == []


def test_the_check_catches_an_import_against_the_grain() -> None:
    """The check itself can fail: data (row 6) importing models (row 7), even late inside a function."""
    fake = PACKAGE / "data" / "_grain_probe.py"
    fake.write_text("def f():\n    from embedlab.models.encoder import Encoder\n    return Encoder\n")
    try:
        bad = against_the_grain(layers())
    finally:
        fake.unlink()
    assert bad == ["embedlab/data/_grain_probe.py:2 (data, row 6) imports models"]


def cli_functions() -> dict[str, list[str]]:
    """Top-level functions of each entry point in embedlab/cli (common.py, the shared runner, left out)."""
    found = {}
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        if path.name not in ("__init__.py", "common.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found[path.name] = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    return found


def test_entry_points_hold_no_job_logic() -> None:
    """Each CLI only parses arguments or composes config and calls a job in `training` or `jobs`: `main` is all it
    defines, so a job can be run from Python, a notebook or a test without a command line."""
    found = cli_functions()
    assert set(found) >= {"eval.py", "mine.py", "score.py", "reranker.py", "report.py", "pipeline.py", "train.py"}
    assert {name: fns for name, fns in found.items() if fns != ["main"]} == {}
