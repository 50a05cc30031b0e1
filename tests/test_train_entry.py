"""`embedlab.training.train` from Python, on tiny random encoders and the real SciFact pairs: a composed config and a
folder are all a run needs; a run of 0 steps still evaluates its start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import tiny_encoder


def train_tiny(tok, tmp_path: Path, real_data: Path, monkeypatch, steps: int) -> dict:
    """A tiny random encoder trained `steps` steps on the real SciFact pairs through `embedlab.training.train`, into
    `tmp_path`/run (5 queries, 50 documents evaluated)."""
    from embedlab.config.build import compose
    from embedlab.training import train

    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    tiny_encoder(tok, projection=None).save(tmp_path / "student")
    overrides = [f"model.path={tmp_path / 'student'}", f"trainer.max_steps={steps}", "eval.limit=5", "eval.max_docs=50"]
    overrides += ["logger=csv", "data.batch_size=4", "data.max_length=32", f"data.root={real_data}"]
    return train(compose("train", overrides), tmp_path / "run")


@pytest.mark.slow  # a real (tiny) training run on the real SciFact data, through the library entry
def test_train_runs_from_python_with_a_composed_config(tok, tmp_path, real_data, monkeypatch) -> None:
    """`embedlab.training.train` needs no command line: a composed config and a folder are all it takes."""
    result = train_tiny(tok, tmp_path, real_data, monkeypatch, steps=3)
    assert result["summary"]["steps"] == 3
    assert list(result["systems"]) == ["student (before)", "student"]
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written == result["systems"]
    from safetensors.torch import load_file

    start, trained = (load_file(tmp_path / f / "model.safetensors") for f in ("student", "run/model"))
    assert start.keys() == trained.keys() and any(not torch.equal(start[k], trained[k]) for k in start)


@pytest.mark.slow  # a real (tiny) run of 0 steps on the real SciFact data
def test_a_run_of_zero_steps_evaluates_its_start_as_the_trained_student(tok, tmp_path, real_data, monkeypatch) -> None:
    """Lightning skips every train hook of a fit with no step; the run still writes the student's row and files (the
    closed-form start of LEAF's grids), equal to the row before training."""
    result = train_tiny(tok, tmp_path, real_data, monkeypatch, steps=0)
    assert result["summary"]["steps"] == 0
    assert result["systems"]["student"] == result["systems"]["student (before)"] != {}
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["scifact"] == result["systems"]["student"]["scifact"]
