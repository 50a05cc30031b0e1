"""`python -m embedlab.cli.train` end to end on the real data with MiniLM: a 2-step InfoNCE run (through GradCache), a
2-step LEAF run against a black-box teacher file, and config errors that stop the run before any data or teacher
work."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from embedlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300
TINY = [
    "trainer.max_steps=2",
    "trainer.log_every_n_steps=1",
    "eval.limit=10",
    "eval.max_docs=100",
    "logger=csv",
    "data.batch_size=4",
    "data.max_length=32",
]
BAD = {  # override -> what the one error line must say; a missing data set proves the check comes first
    "temperature": (["loss.infonce.temperature=-1", "data.path=/nonexistent"], "temperature must be > 0"),
    "matryoshka": (["loss.infonce.matryoshka_dims=[4096]", "data.path=/nonexistent"], "matryoshka dims [4096]"),
}

pytestmark = pytest.mark.slow


def train_cmd(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "embedlab.cli.train", *overrides, f"hydra.run.dir={run_dir}"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli_train")


def run_cli(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def bad_runs(workdir: Path, env: dict[str, str]) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """The failing runs side by side (each is mostly interpreter start-up)."""
    cases = {"nope": (["loss=nope"], "")} | BAD
    procs = {}
    for name, (overrides, _) in cases.items():
        cmd = train_cmd(workdir / f"bad_{name}", *overrides, "logger=csv")
        procs[name] = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    out = {}
    for name, proc in procs.items():
        stdout, _ = proc.communicate(timeout=TIMEOUT)
        out[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, ""), workdir / f"bad_{name}")
    return out


def test_plain_infonce_run(workdir: Path, env: dict[str, str]) -> None:
    from sentence_transformers import SentenceTransformer

    out = workdir / "plain"
    proc = run_cli(train_cmd(out, *TINY, "step.chunk_size=2"), env)  # through GradCache: 2 chunks of 2 pairs
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"run directory: {out}" in proc.stdout

    for folder in (out, out / "before"):  # trained and untrained student: the embedlab-eval schema, per query too
        rows = [json.loads(line) for line in (folder / "per_query" / "scifact.jsonl").read_text().splitlines()]
        assert len(rows) == 10 and all("ndcg_at_10" in r and "query_id" in r for r in rows)
    for name in ("metrics.json", "before/metrics.json"):
        metrics = json.loads((out / name).read_text())
        assert list(metrics) == ["scifact"], name
        assert {"ndcg_at_10", "map_at_10", "recall_at_100", "mrr_at_10", "precision_at_1"} <= set(metrics["scifact"])
        assert 0.0 < metrics["scifact"]["ndcg_at_10"] <= 1.0
    config = OmegaConf.load(out / "config.yaml")
    assert (config.trainer.max_steps, config.data.batch_size, config.logger.kind) == (2, 4, "csv")
    assert config.step.chunk_size == 2 and config.trainer.strategy == "auto"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["steps"] == 2 and len(manifest["models"]["student"]) == 64
    assert manifest["teacher_source"] is None and "teacher" not in manifest["models"]
    precision = manifest["precision"]  # `auto` resolved (the suite pins it to fp32) and why
    assert precision["resolved"] == {"model": "fp32", "teacher": None, "trainer": "32-true"}
    assert precision["reason"] == "EMBEDLAB_AUTO_PRECISION=fp32 -> fp32"
    with open(next((out / "logs").glob("version_*/metrics.csv")), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r.get("train/loss")] == ["0", "1"]
    assert any(r.get("eval/scifact/ndcg_at_10") for r in rows)

    card = (out / "model" / "README.md").read_text()  # the model card: base model, this run's evaluation, citation
    trained = json.loads((out / "metrics.json").read_text())["scifact"]["ndcg_at_10"]
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card and f"{trained:.4f}" in card
    assert "| infonce" in card.replace("`", "") and "1908.10084" in card
    model = SentenceTransformer(str(out / "model"), device="cpu")
    emb = model.encode(["a claim about cells", "another one"])
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_leaf_run_with_a_teacher_file(workdir: Path, env: dict[str, str]) -> None:
    texts = [f"text {i}: proteins, cells and the immune response" for i in range(12)]
    jsonl = workdir / "texts.jsonl"
    jsonl.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    npz = workdir / "teacher.npz"
    vectors = np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32)
    np.savez(npz, ids=np.array([f"t:d{i}" for i in range(12)]), embeddings=vectors)

    out = workdir / "leaf"
    overrides = [
        *TINY,
        "data=leaf_texts",
        f"data.sources=[{{name: t, type: jsonl, path: {jsonl}}}]",
        "data.heldout=2",
        "loss=leaf",
        "model.projection_dim=16",
        "teacher=file",
        f"teacher.file={npz}",
        "eval.tasks=[stsb]",
        "eval.before_training=false",
    ]
    proc = run_cli(train_cmd(out, *overrides), env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert str(npz) in manifest["teacher_source"]
    summary = manifest["summary"]
    assert summary["steps"] == 2 and -1.0 <= summary["heldout_cosine"] <= 1.0
    assert list(json.loads((out / "metrics.json").read_text())) == ["stsb"]
    assert not (out / "before").exists()
    assert (out / "model" / "2_Dense").is_dir()  # the 384 -> 16 projection is exported


def test_unknown_loss_group_lists_the_options(bad_runs) -> None:
    # Hydra rejects the group option itself (its exit code 1), before our code runs: the message lists the choices.
    proc, _ = bad_runs["nope"]
    assert proc.returncode == 1 and "Traceback" not in proc.stdout
    assert "Could not find 'loss/nope'" in proc.stdout
    assert all(name in proc.stdout for name in ("infonce", "focal_infonce", "leaf", "kl_distill", "margin_mse"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_loss_settings_fail_in_one_line_before_any_work(bad_runs, name: str) -> None:
    proc, run_dir = bad_runs[name]
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout
    errors = [line for line in proc.stdout.splitlines() if "ERROR" in line or "Error" in line]
    assert len(errors) == 1 and BAD[name][1] in errors[0], proc.stdout[-3000:]
    assert "not found" not in proc.stdout  # the missing data set was never read
    assert "Trainer" not in proc.stdout and not (run_dir / "before").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eval.tasks=[scifcat]", "eval.before_training=false"], "unknown task 'scifcat'"),
        (["projection.init=rigde"], "projection.init='rigde' is not one of random, ridge"),
        (["projection.init=ridge"], "needs a projection: set model.projection_dim"),
        (["eval.limit=0"], "eval limit must be a positive integer"),
    ],
)
def test_config_errors_come_before_data_and_teacher(overrides: list[str], message: str, tmp_path: Path) -> None:
    """In process (no interpreter start-up): the check fires although the data set does not even exist."""
    from hydra import compose, initialize_config_dir

    from embedlab.config.build import CONF_DIR
    from embedlab.training import train as run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "logger=csv", "data.path=/nonexistent", "teacher=mpnet"])
    with pytest.raises(ConfigError, match=message):
        run(cfg, tmp_path)
    assert not list(tmp_path.iterdir())
