"""Outputs appear whole or not at all, and caches are keyed by everything that determines them.

The audit test reads embedlab's source: every call that writes a file must sit inside `atomic_path` (or a private
temporary folder), or in a helper listed below whose every call site does.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import tiny_encoder
from tokenizers import normalizers

from embedlab.io import atomic_path, write_jsonl_atomic

PACKAGE = Path(__file__).resolve().parents[1] / "embedlab"
# Calls that create or overwrite files: methods of any object, functions of a module, plain functions. `open` counts
# only with a write/append/create mode. (Encoder.save is audited where it writes, inside its own atomic_path.)
METHOD_WRITERS = {"write_text", "write_bytes", "save_pretrained", "to_csv", "savefig", "extractall"}
MODULE_WRITERS = {
    "np": {"save", "savez", "savez_compressed"},
    "torch": {"save"},
    "json": {"dump"},
    "pickle": {"dump"},
    "shutil": {"copy", "copy2", "copyfile", "copytree", "move"},
}
FUNCTION_WRITERS = {"save_file"}  # safetensors
# Helpers that write into a folder their caller made safe; their call sites are audited like writes.
HELPERS = {
    ("models/st_format.py", "write_layout"): "fills the folder Encoder.save is building inside atomic_path",
    ("models/st_format.py", "_add"): "a sub-folder of write_layout's folder",
    ("data/download.py", "_fetch"): "streams the archive into a TemporaryDirectory, never the target",
    ("data/download.py", "_extract"): "unpacks into download_beir's atomic_path folder",
}
SAFE_CONTEXTS = {"atomic_path", "TemporaryDirectory", "mkdtemp"}
# Written by libraries, not by embedlab: Lightning's CSV logger (logs/, appended while training), Hydra's .hydra/
# and W&B's wandb/ folders. They are logs of a run in progress, never read back as results.


def _name(node: ast.AST) -> str:
    func = node.func if isinstance(node, ast.Call) else node
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _writes(call: ast.Call) -> bool:
    func, name = call.func, _name(call)
    if isinstance(func, ast.Attribute):
        receiver = func.value.id if isinstance(func.value, ast.Name) else None
        return name in METHOD_WRITERS or name in MODULE_WRITERS.get(receiver or "", ())
    if name == "open":
        modes = [a.value for a in call.args[1:2] if isinstance(a, ast.Constant)]
        modes += [k.value.value for k in call.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
        return any(set(str(m)) & set("wax+") for m in modes)
    return name in FUNCTION_WRITERS or any(name == helper for _, helper in HELPERS)


def unsafe_writes(path: Path, root: Path = PACKAGE) -> list[str]:
    """`file:line call` for each write that is neither inside a safe `with` nor in an allowed helper."""
    rel = path.relative_to(root).as_posix()
    found = []

    def visit(node: ast.AST, safe: bool, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function, safe = node.name, (rel, node.name) in HELPERS
        if isinstance(node, ast.With | ast.AsyncWith):
            safe = safe or any(_name(item.context_expr) in SAFE_CONTEXTS for item in node.items)
        if isinstance(node, ast.Call) and _writes(node) and not safe:
            found.append(f"{rel}:{node.lineno} {_name(node)} (in {function})")
        for child in ast.iter_child_nodes(node):
            visit(child, safe, function)

    visit(ast.parse(path.read_text()), False, "<module>")
    return found


def test_every_file_embedlab_writes_goes_through_an_atomic_path() -> None:
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "io.py"]  # io.py is where atomic writes live
    assert len(files) > 40
    assert [w for p in files for w in unsafe_writes(p)] == []


def test_the_audit_catches_a_raw_write(tmp_path: Path) -> None:
    module = tmp_path / "_audit_probe.py"
    module.write_text(
        "import json\nfrom embedlab.io import atomic_path\n\n"
        "def good(p):\n    with atomic_path(p) as tmp, open(tmp, 'w') as f:\n        json.dump({}, f)\n\n"
        "def bad(p):\n    p.write_text('x')\n    with open(p, 'a') as f:\n        f.write('y')\n    open(p).read()\n"
    )
    expected = ["_audit_probe.py:9 write_text (in bad)", "_audit_probe.py:10 open (in bad)"]
    assert unsafe_writes(module, tmp_path) == expected


# ------------------------------------------------------------------------------------------------ interrupted writers


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(stop_at=st.integers(0, 6), error=st.sampled_from([ValueError, KeyboardInterrupt]), existed=st.booleans())
def test_an_interrupted_jsonl_writer_leaves_the_old_file_or_none(tmp_path_factory, stop_at, error, existed) -> None:
    folder = tmp_path_factory.mktemp("jsonl")
    target = folder / "out.jsonl"
    if existed:
        target.write_text('{"old": true}\n')

    def rows():
        for i in range(6):
            if i == stop_at:
                raise error("interrupted")
            yield {"i": i}

    if stop_at < 6:
        with pytest.raises(error):
            write_jsonl_atomic(target, rows())
        assert (target.read_text() if target.exists() else None) == ('{"old": true}\n' if existed else None)
    else:
        write_jsonl_atomic(target, rows())
        assert [json.loads(line)["i"] for line in target.read_text().splitlines()] == list(range(6))
    assert sorted(p.name for p in folder.iterdir()) == (["out.jsonl"] if existed or stop_at == 6 else [])


def test_an_interrupted_folder_write_keeps_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights").write_text("v2, half")
        raise RuntimeError("killed mid-save")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (target / "weights").read_text() == "v1"


SLOW_WRITER = """
import sys, time
from embedlab.io import write_jsonl_atomic

def rows():
    for i in range(10_000):
        if i == 50:
            print("writing", flush=True)
        time.sleep(0.001)
        yield {"i": i}

write_jsonl_atomic(sys.argv[1], rows())
"""


def test_sigkill_mid_write_never_leaves_a_partial_target(tmp_path: Path) -> None:
    target = tmp_path / "negatives.jsonl"
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"writing"
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not target.exists()  # only the hidden temporary sibling remains, never a readable half file
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".negatives.jsonl.") and leftovers[0].endswith(".tmp")


# ------------------------------------------------------------------------------------------------ fingerprints


def test_encoder_fingerprint_follows_the_tokenizer_not_only_its_size(tok) -> None:
    enc = tiny_encoder(tok)
    before = enc.fingerprint()
    enc.tokenize(["a text long enough to be truncated here"] * 2)  # per-call truncation/padding state: no change
    assert enc.fingerprint() == before == tiny_encoder(tok).fingerprint()
    cased = copy.deepcopy(tok)
    cased.backend_tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    assert len(cased) == len(tok) and cased("Hello")["input_ids"] != tok("Hello")["input_ids"]
    assert tiny_encoder(cased).fingerprint() != before  # same vocabulary size, other ids: another cache key


def test_the_manifest_records_the_commit_a_job_started_with(tmp_path) -> None:
    """A commit made while a long run works is not the run's code: git state is read once, when the job starts."""
    import subprocess

    from embedlab.manifest import build_manifest, git_state

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    started = git_state(repo)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "second"], check=True)
    assert git_state(repo) == started
    head = subprocess.run([*git, "rev-parse", "HEAD~1"], capture_output=True, text=True, check=True).stdout.strip()
    assert started["commit"] == head
    assert build_manifest()["git"] == git_state()  # the manifest takes the same once-read value
