"""Kill and resume `embedlab-train` for real (subprocesses, tiny random BERTs with dropout, a tiny-BERT teacher
through the embedding cache, STSb evaluation every 4 steps, 3 epochs of 6 batches, a checkpoint every 5 steps):

  uninterrupted                                                                     ─► reference
  SIGKILL after step 11 → newest checkpoint (10) corrupted → resume falls back to step 5 (mid-epoch 0)
     → SIGTERM after step 12 (the end of epoch 1: checkpoint saved, exit 143) → resume from 12 → finish

must end bit-identical to the reference: metrics.json, the exported weights, the manifest's student fingerprint.
The same chain runs on a mixture (data.mixture: a texts dataset for LEAF against the cached teacher table, rebuilt
from the embedding cache by each resumed process, and a pairs dataset for InfoNCE; 3 + 3 one-dataset batches per
epoch), whose batches per dataset must match too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
KILLER = Path(__file__).with_name("kill_at_step.py")
TIMEOUT = 300


@pytest.fixture(scope="module", params=["texts", "mixture"])
def overrides(request, tmp_path_factory, tok) -> list[str]:
    root = tmp_path_factory.mktemp("resume_models")
    for name, seed in (("student", 0), ("teacher", 1)):
        torch.manual_seed(seed)
        sizes = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": len(tok)}
        model = AutoModel.from_config(AutoConfig.for_model("bert", num_hidden_layers=2, **sizes))  # dropout 0.1
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    topics = ["cells", "proteins", "markets", "rain", "music", "code"]
    texts = root / "texts.jsonl"
    texts.write_text("".join(json.dumps({"id": f"d{i}", "text": f"{i} on {topics[i % 6]} {'and more ' * (i % 5)}"})
                             + "\n" for i in range(28)))  # fmt: skip
    if request.param == "texts":
        data = [
            "data=leaf_texts",
            f"data.sources=[{{name: t, type: jsonl, path: {texts}}}]",
            "data.heldout=4",  # 24 texts in training: 6 batches of 4 per epoch
            "loss=leaf",
        ]
    else:
        pairs = root / "pairs.jsonl"
        pairs.write_text("".join(json.dumps({"query": f"what about {topics[i % 6]} {i}", "positive": f"{i} on "
                                 f"{topics[i % 6]}"}) + "\n" for i in range(13)))  # fmt: skip
        data = [  # 13 texts and 13 pairs, drop_last: 3 + 3 batches of 4 per epoch
            "data=mixture_offline",
            f"data.mixture=[{{name: t, kind: texts, path: {texts}, weight: 1}}, "
            f"{{name: p, kind: pairs, path: {pairs}, instruction: 'query: ', weight: 1}}]",
            "data.drop_last=true",
            "loss=[infonce,leaf]",
        ]
        texts.write_text("".join(texts.read_text().splitlines(keepends=True)[:13]))
    return [
        f"model.path={root / 'student'}",
        *data,
        "data.batch_size=4",
        "data.max_length=32",
        "teacher=mpnet",
        f"teacher.path={root / 'teacher'}",
        "teacher.precision=fp32",
        "optim.lr=1e-3",  # large enough that every step moves the metric
        "eval.tasks=[stsb]",
        "eval.limit=20",
        "eval.every_n_steps=4",
        "eval.before_training=false",
        "trainer.max_epochs=3",
        "logger=csv",
        "checkpoint.every_n_steps=5",
    ]


def start(args: list[str], env: dict[str, str], kill: tuple[int, str] | None = None) -> subprocess.Popen:
    head = [str(KILLER), str(kill[0]), kill[1]] if kill else ["-m", "embedlab.cli.train"]
    return subprocess.Popen(
        [sys.executable, *head, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out


def test_killed_twice_and_resumed_ends_identical(overrides, env, tmp_path) -> None:
    ref_dir, run = tmp_path / "reference", tmp_path / "interrupted"
    reference = start([*overrides, f"hydra.run.dir={ref_dir}"], env)  # runs beside the interrupted chain

    code, out = finish(start([*overrides, f"hydra.run.dir={run}"], env, kill=(11, "KILL")))
    assert code == -9, out[-3000:]
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["step_10.ckpt", "step_5.ckpt"]
    data = (checkpoints / "step_10.ckpt").read_bytes()
    (checkpoints / "step_10.ckpt").write_bytes(data[: len(data) // 3])

    code, out = finish(start([*overrides, f"resume={run}"], env, kill=(12, "TERM")))
    assert code == 143, out[-3000:]
    assert "step_10.ckpt is unreadable" in out and "step_5.ckpt (step 5)" in out
    assert "SIGTERM: saved" in out and "continue with resume=" in out and "Traceback" not in out
    # the last two, and the one resumed from (Lightning never deletes that one)
    names = ["step_10.ckpt", "step_10.ckpt.corrupt", "step_12.ckpt", "step_5.ckpt"]
    assert sorted(p.name for p in checkpoints.iterdir()) == names

    code, out = finish(start([*overrides, f"hydra.run.dir={run}", "resume=true"], env))
    assert code == 0 and "step_12.ckpt (step 12)" in out, out[-3000:]
    code, out = finish(reference)
    assert code == 0, out[-3000:]

    metrics = (ref_dir / "metrics.json").read_text()
    assert json.loads(metrics)["stsb"]["cosine_spearman"] != 0
    assert (run / "metrics.json").read_text() == metrics
    weights = "model/model.safetensors"
    assert (run / weights).read_bytes() == (ref_dir / weights).read_bytes()
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (ref_dir, run)]
    assert manifests[0]["models"]["student"] == manifests[1]["models"]["student"]
    assert manifests[0]["summary"]["steps"] == manifests[1]["summary"]["steps"] == 18
    teacher = next(o for o in overrides if o.startswith("teacher.path=")).partition("=")[2]
    assert manifests[1]["teacher_source"] == f"teacher {teacher}"  # LEAF's targets: the cached table
    assert not checkpoints.exists() and not (ref_dir / "checkpoints").exists()  # removed once the run finished
    counts = [m["summary"].get("batches_per_dataset") for m in manifests]
    assert counts[0] == counts[1]
    if counts[0] is not None:  # the mixture: 3 + 3 batches per epoch, 3 epochs
        assert counts[0] == {"t": 9, "p": 9}
