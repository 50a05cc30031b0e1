"""`python -m embedlab.cli.eval` end to end, as a subprocess: output files, the grid, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embedlab.data import load_task

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300

pytestmark = pytest.mark.slow


def cli_args(run_dir: Path, cache_dir: Path, **overrides: str) -> list[str]:
    values = {
        "model": "minilm",
        "tasks": "[scifact]",
        "eval.limit": "10",
        "eval.max_docs": "100",
        "hydra.run.dir": str(run_dir),
        "eval.cache_dir": str(cache_dir),
        **overrides,
    }
    return [sys.executable, "-m", "embedlab.cli.eval", *(f"{k}={v}" for k, v in values.items())]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_eval")


@pytest.fixture(scope="module")
def plain_run(workdir: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, Path]:
    out = workdir / "plain"
    return run_cli(cli_args(out, workdir / "embeddings"), env), out


def test_plain_run_writes_metrics_manifest_and_config(plain_run, real_data: Path) -> None:
    proc, out = plain_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "ndcg_at_10" in proc.stdout  # the summary table
    assert str(out / "metrics.json") in proc.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["scifact"]
    assert 0.0 <= metrics["scifact"]["ndcg_at_10"] <= 1.0
    assert 0.0 <= metrics["scifact"]["recall_at_100"] <= 1.0
    assert len((out / "per_query" / "scifact.jsonl").read_text().splitlines()) == 10
    assert (out / "runs" / "scifact.trec").stat().st_size > 0
    assert not (out / "grid.jsonl").exists()

    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["git"]) == {"commit", "dirty"} and manifest["git"]["commit"]
    assert "torch" in manifest["versions"] and "python" in manifest["versions"]
    expected = load_task("scifact", real_data, limit=10, max_docs=100).fingerprint
    assert manifest["data"] == {"scifact": expected}
    assert set(manifest["models"]) == {"document_model"} and len(manifest["models"]["document_model"]) == 64
    assert manifest["cache"] == {"hits": 0, "misses": 2}

    config = (out / "config.yaml").read_text()
    assert "scifact" in config and "limit: 10" in config and "max_docs: 100" in config
    assert not list(out.rglob("*.tmp"))


def test_grid_run_writes_one_row_per_cell_from_the_cache(plain_run, workdir: Path, env: dict[str, str]) -> None:
    assert plain_run[0].returncode == 0  # it filled the embedding cache this run reads
    out = workdir / "grid"
    args = cli_args(out, workdir / "embeddings", **{"eval.dims": "[64,128]", "eval.precisions": "[float32,binary]"})
    proc = run_cli(args, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in (out / "grid.jsonl").read_text().splitlines()]
    assert [(r["task"], r["dim"], r["precision"]) for r in rows] == [
        ("scifact", 384, "float32"),  # the full-size reference cell always comes first
        ("scifact", 384, "binary"),
        ("scifact", 64, "float32"),
        ("scifact", 64, "binary"),
        ("scifact", 128, "float32"),
        ("scifact", 128, "binary"),
    ]
    assert all(0.0 <= r["ndcg_at_10"] <= 1.0 for r in rows)
    assert "nDCG@10 / Spearman" in proc.stdout  # the grid table
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cache"] == {"hits": 2, "misses": 0}  # same model and texts: nothing re-encoded


def test_mteb_task_beside_embedlabs_in_one_metrics_file(plain_run, workdir: Path, env: dict[str, str]) -> None:
    assert plain_run[0].returncode == 0  # it filled the embedding cache: mteb's SciFact encodes the same texts
    out = workdir / "mteb"
    proc = run_cli(cli_args(out, workdir / "embeddings", tasks="[scifact,mteb:SciFact]"), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["scifact", "mteb:SciFact"]
    for name in ("ndcg_at_10", "map_at_100", "recall_at_100"):
        assert metrics["mteb:SciFact"][name] == pytest.approx(metrics["scifact"][name], abs=1e-4), name
    assert "mteb:SciFact" in proc.stdout  # in the summary table
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["mteb:SciFact"] == manifest["data"]["scifact"]  # the same local files and subset
    assert manifest["cache"] == {"hits": 4, "misses": 0}  # both tasks read the vectors the plain run cached


BAD_INPUTS = {
    "unknown task": ({"tasks": "[nope]"}, "unknown task 'nope'; known tasks: arguana, scifact, sick, stsb"),
    "unknown mteb task": ({"tasks": "[scifact,mteb:NoSuchTask]"}, "unknown mteb task 'NoSuchTask'"),
    "unknown mteb source": ({"eval.mteb_source": "web"}, "unknown eval.mteb_source 'web'; choose one of auto"),
    "missing model folder": ({"model.path": "/does/not/exist"}, "model folder '/does/not/exist' does not exist"),
    "unknown precision": ({"eval.precisions": "[fp8]"}, "unknown precision(s) ['fp8']; choose from"),
    "dim above the model's": ({"eval.dims": "[999]"}, "truncation dim 999 is invalid: it must be 1..384"),
    "scalar dim": ({"eval.dims": "1000"}, "truncation dim 1000 is invalid"),
}


@pytest.fixture(scope="module")
def bad_runs(workdir: Path, env: dict[str, str]) -> dict[str, tuple[int, str, str, Path]]:
    """Every bad invocation, started together (each is mostly interpreter start-up)."""
    procs = {}
    for i, (name, (overrides, _)) in enumerate(BAD_INPUTS.items()):
        out = workdir / f"bad{i}"
        args = cli_args(out / "run", out / "embeddings", **overrides)
        procs[name] = (
            subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            out,
        )
    results = {}
    for name, (proc, out) in procs.items():
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
        results[name] = (proc.returncode, stdout, stderr, out)
    return results


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_with_one_line_and_exit_code_2_before_encoding(bad_runs, case: str) -> None:
    returncode, stdout, stderr, out = bad_runs[case]
    text = stdout + stderr
    assert "Traceback" not in text, text
    assert returncode == 2, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "ERROR" in lines[0] and BAD_INPUTS[case][1] in lines[0], lines[0]
    # nothing was evaluated or encoded
    assert "evaluating" not in text
    assert not (out / "run" / "metrics.json").exists()
    assert not list(out.rglob("*.npy"))


def test_the_python_entry_runs_the_same_job_as_the_cli(plain_run, workdir: Path, real_data: Path) -> None:
    """`embedlab.jobs.evaluate.run` with a composed config: no command line, the same files and the same numbers."""
    from embedlab.config.build import compose
    from embedlab.jobs.evaluate import run

    assert plain_run[0].returncode == 0
    overrides = ["model=minilm", "tasks=[scifact]", "eval.limit=10", "eval.max_docs=100"]
    cfg = compose("eval", [*overrides, f"eval.cache_dir={workdir / 'embeddings'}", f"data.root={real_data}"])
    out = workdir / "python_entry"
    results = run(cfg, out)
    cli = json.loads((plain_run[1] / "metrics.json").read_text())["scifact"]
    assert results[0].metrics["ndcg_at_10"] == cli["ndcg_at_10"]
    assert json.loads((out / "metrics.json").read_text())["scifact"] == cli
    assert json.loads((out / "manifest.json").read_text())["data"] == {"scifact": results[0].fingerprint}
    assert "tasks:\n- scifact" in (out / "config.yaml").read_text()
