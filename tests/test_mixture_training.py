"""A real (tiny-model) training run on the real offline mixture (conf/experiment/mixture_offline.yaml): six staged
datasets of four kinds, InfoNCE on the pairs and STS batches, LEAF on the texts batches against the recipe's cached
teacher table, the projection fitted in closed form on the texts datasets first. The batches trained on per dataset
must be the sampler's schedule, and follow the configured weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tiny import tiny_encoder

pytestmark = pytest.mark.slow

STEPS = 256  # two of the sampler's blocks: per-dataset counts within one batch of the weights


def test_offline_mixture_trains_with_per_dataset_counts_following_the_weights(tok, tmp_path, real_data, monkeypatch):
    from embedlab.config.build import build_encoder, compose
    from embedlab.training import train
    from embedlab.training.prepare import mixture_data

    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    tiny_encoder(tok, projection=None, seed=0).save(tmp_path / "student")
    tiny_encoder(tok, projection=None, seed=1).save(tmp_path / "teacher")
    overrides = [
        "experiment=mixture_offline",
        f"model.path={tmp_path / 'student'}",
        "model.projection_dim=32",  # the tiny teacher's size: the recipe's ridge fit needs a projection
        f"teacher.path={tmp_path / 'teacher'}",
        "teacher.precision=fp32",
        "teacher.max_length=64",  # the 13,857 texts of the two texts datasets, embedded once
        f"data.root={real_data}",
        "data.batch_size=8",
        "data.max_length=32",
        f"trainer.max_steps={STEPS}",
        "eval.tasks=[stsb]",
        "eval.limit=20",
        "eval.before_training=false",
        "eval.teacher=false",
        "checkpoint.every_n_steps=0",
        "export=false",
    ]
    cfg = compose("train", overrides)
    result = train(cfg, tmp_path / "run")
    counts = result["summary"]["batches_per_dataset"]
    names = [e.name for e in cfg.data.mixture]
    assert sum(counts.values()) == STEPS and set(counts) == set(names)
    weights = np.array([e.weight for e in cfg.data.mixture])
    shares = weights / weights.sum()
    for name, share in zip(names, shares, strict=True):
        assert abs(counts[name] / STEPS - share) <= 0.02, (name, counts[name], share)
    # exactly the sampler's schedule: the data module's order, nothing lost or added by the loader or the loop
    data = mixture_data(cfg.data, build_encoder(cfg.model), cfg.seed)
    schedule = np.bincount(data.batch_sampler.schedule()[:STEPS], minlength=len(names))
    assert [counts[n] for n in names] == schedule.tolist()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["summary"]["batches_per_dataset"] == counts
    assert manifest["teacher_source"] == f"teacher {tmp_path / 'teacher'}"  # LEAF's targets: the cached table
    assert data.sizes["scifact_pairs"] == 919 and data.sizes["arguana_genq"] == 25844  # the staged files, whole
    logged = (tmp_path / "run").rglob("metrics.csv")
    header = next(iter(logged)).read_text().splitlines()[0]
    assert "train/infonce" in header and "train/leaf" in header  # each term ran on its own batches
