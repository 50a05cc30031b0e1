"""A real LEAF training run in miniature, in process: tiny random-init BERT teacher (32-d) and student (+ a 32->32
projection fitted in closed form), 2 steps on 40 texts, evaluated on 10 SciFact queries / 100 documents and 40 STSb
pairs over a dims x precision grid: every file `embedlab-train experiment=leaf_demo` writes, in seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tiny import TEXTS, tiny_encoder

GRID = ["eval.dims=[8,16]", "eval.precisions=[float32,int8,binary]"]


def tiny_leaf_overrides(root: Path, tok, data_root: Path) -> list[str]:
    """The miniature LEAF run's models and texts (written under `root`) and the overrides every such run shares."""
    teacher, student = root / "teacher_model", root / "student_model"
    tiny_encoder(tok, projection=None, seed=1).save(teacher)
    tiny_encoder(tok, projection=None, seed=2).save(student)
    texts = root / "texts.jsonl"
    texts.write_text("".join(json.dumps({"id": f"d{i}", "text": f"{t} ({i})"}) + "\n" for i, t in enumerate(TEXTS * 3)))
    return [
        "experiment=leaf_demo",
        f"model.path={student}",
        "model.projection_dim=32",
        "model.precision=fp32",
        f"teacher.path={teacher}",
        "teacher.precision=fp32",
        "teacher.max_length=32",
        f"data.sources=[{{name: t, type: jsonl, path: {texts}}}]",
        "data.heldout=8",
        "data.max_length=32",
        f"data.root={data_root}",
        "trainer.max_steps=2",
        "trainer.precision=32",
        "eval.tasks=[scifact,stsb]",
        "eval.limit=10",
        "eval.max_docs=100",
    ]


def tiny_leaf_run(root: Path, tok, data_root: Path) -> Path:
    from hydra import compose, initialize_config_dir

    from embedlab.config.build import CONF_DIR
    from embedlab.training import train as run

    overrides = [
        *tiny_leaf_overrides(root, tok, data_root),
        "data.batch_size=8",
        "eval.cache=false",
        "export=false",
        *GRID,
    ]
    out = root / "run"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run(cfg, out)
    return out
