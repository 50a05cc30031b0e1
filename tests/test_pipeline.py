"""embedlab-pipeline: a real chain (tiny random BERT -> 2-step InfoNCE on SciFact train -> two seeds from that ->
uniform soup), each stage starting from the previous one's output, then resumed; a chain whose second stage takes the
first one's output as its LEAF teacher (`previous_as: teacher`); and the chain's config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file

from embedlab.cli.pipeline import main
from embedlab.config.build import preset_with
from embedlab.errors import ConfigError
from embedlab.report.runs import configuration_names, find_runs
from embedlab.training.pipeline import finished, load_spec, parse, run_cli, run_pipeline
from tests.tiny import TEXTS, tiny_encoder

TINY_TRAIN = [
    "logger=csv",
    "trainer.max_steps=2",
    "data.batch_size=4",
    "data.max_length=32",
    "eval.before_training=false",
    "eval.limit=5",
    "eval.max_docs=50",
]


def chain(out: Path, start: Path) -> dict:
    return {
        "out": str(out),
        "start": str(start),
        "common": {"train": TINY_TRAIN, "soup": []},
        "stages": [
            {"name": "weak", "cli": "train", "overrides": ["optim.lr=1e-3"]},
            {"name": "finetune", "cli": "train", "variants": [["seed=0"], ["seed=1"]]},
            {"name": "soup", "cli": "soup", "overrides": ["method=uniform"]},
        ],
    }


@pytest.mark.slow
def test_chain_runs_each_stage_from_the_previous_output_and_resumes(
    tok, real_data: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("EMBEDLAB_DATA", str(real_data))
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    start = tiny_encoder(tok, projection=None).save(tmp_path / "start")
    out = tmp_path / "chain"
    spec = OmegaConf.create(chain(out, start))
    rows = run_pipeline(spec)

    assert [r["status"] for r in rows] == ["ran"] * 4
    assert json.loads((out / "pipeline.json").read_text()) == rows
    weak, ft0, ft1, soup = (Path(r["run_dir"]) for r in rows)
    assert (weak, ft0, soup) == (out / "weak", out / "finetune" / "0", out / "soup")
    assert all(finished(d) for d in (weak, ft0, ft1, soup))
    # each stage started from the previous stage's output (the run's own config says so)
    assert OmegaConf.load(weak / "config.yaml").model.path == str(start)
    for d in (ft0, ft1):
        assert OmegaConf.load(d / "config.yaml").model.path == str(weak / "model")
    assert OmegaConf.load(soup / "config.yaml").models == [str(ft0 / "model"), str(ft1 / "model")]
    key = "embeddings.word_embeddings.weight"
    w = [load_file(m / "model.safetensors")[key] for m in (start, *(d / "model" for d in (weak, ft0, ft1, soup)))]
    assert not (w[0] == w[1]).all() and not (w[2] == w[3]).all()  # every training stage moved the weights
    assert (w[4] - (w[2] + w[3]) / 2).abs().max() < 1e-7
    assert json.loads((ft0 / "metrics.json").read_text())["scifact"]["ndcg_at_10"] >= 0

    def refuse(cli, cfg, run_dir):
        raise AssertionError(f"{run_dir} is finished and must be skipped")

    assert [r["status"] for r in run_pipeline(spec, runner=refuse)] == ["finished"] * 4

    # a fine-tune lost its model: it runs again, its finished sibling does not, and the soup is redone
    shutil.rmtree(ft1 / "model")
    ran: list[Path] = []
    rows = run_pipeline(spec, runner=lambda cli, cfg, run_dir: ran.append(run_dir) or run_cli(cli, cfg, run_dir))
    assert ran == [ft1, soup] and [r["status"] for r in rows] == ["finished", "finished", "ran", "ran"]

    # a fine-tune stopped after its model and metrics but before its run record (manifest.json) is not finished
    (ft0 / "manifest.json").unlink()
    ran.clear()
    rows = run_pipeline(spec, runner=lambda cli, cfg, run_dir: ran.append(run_dir) or run_cli(cli, cfg, run_dir))
    assert ran == [ft0, soup] and [r["status"] for r in rows] == ["finished", "ran", "finished", "ran"]


def test_dry_run_plans_and_runs_nothing(tmp_path: Path) -> None:
    spec = OmegaConf.create(chain(tmp_path / "chain", tmp_path / "start"))
    rows = run_pipeline(spec, runner=lambda *a: pytest.fail("dry run ran"), dry_run=True)
    assert [r["status"] for r in rows] == ["planned"] * 4 and not (tmp_path / "chain").exists()
    assert rows[3]["input"] == [str(tmp_path / "chain" / "finetune" / i / "model") for i in "01"]
    assert rows[1]["overrides"] == [*TINY_TRAIN, "seed=0"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["stages"].pop(1), "'soup': a soup needs a previous stage with variants"),
        (lambda s: s["stages"].pop(2) and s["stages"].append({"cli": "train"}), "a train stage starts from one"),
        (lambda s: s["stages"][0].update(cli="eval"), r"stages\[0\].cli must be one of"),
        (lambda s: s["stages"][0].update(seeds=[1]), r"stages\[0\]: unknown key\(s\) \['seeds'\]"),
        (lambda s: s["stages"][1].update(name="weak"), "name 'weak' is used twice"),
        (lambda s: s["stages"][0].update(overrides="seed=1"), r"stages\[0\].overrides must be a list"),
        (
            lambda s: s["stages"][1].update(previous_as="student"),
            r"stages\[1\].previous_as must be one of \('model', 'teacher'\)",
        ),
        (
            lambda s: s["stages"][2].update(previous_as="teacher"),
            r"stages\[2\].previous_as must be one of \('model',\) for a soup",
        ),
        (lambda s: s.pop("out"), "'out'"),
    ],
)
def test_bad_chains_fail_before_anything_runs(tmp_path: Path, change, message: str) -> None:
    raw = chain(tmp_path / "chain", tmp_path / "start")
    change(raw)
    with pytest.raises(ConfigError, match=message):
        parse(OmegaConf.create(raw))


def test_bad_overrides_and_names_are_one_line_errors(tmp_path: Path, capsys) -> None:
    raw = chain(tmp_path / "chain", tmp_path / "start")
    raw["stages"][0]["overrides"] = ["optim.nope=1"]
    with pytest.raises(ConfigError, match=r"stage 'weak' \(train overrides\): Could not override 'optim.nope'"):
        run_pipeline(OmegaConf.create(raw), dry_run=True)
    with pytest.raises(SystemExit) as exit_:
        main(["no_such_pipeline"])
    assert exit_.value.code == 2
    assert load_spec("kalm", ["out=elsewhere"]).out == "elsewhere"
    parse(load_spec("kalm", []))  # the shipped chain is valid


def leaf_chain(out: Path, start: Path, student: Path, texts: Path) -> dict:
    """tiny teacher fine-tuned (InfoNCE) -> LEAF from that fine-tuned teacher into another tiny student, as
    conf/pipeline/leaf_teacher.yaml with tiny models and texts."""
    leaf = [
        "experiment=leaf_pool",  # leaf_demo at a fixed step budget, repeating a small pool (max_epochs=-1)
        f"model.path={student}",
        "model.projection_dim=32",
        "model.precision=fp32",
        "teacher.precision=fp32",
        "teacher.max_length=32",
        f"data.sources=[{{name: t, type: jsonl, path: {texts}}}]",
        "data.heldout=8",
        "data.batch_size=16",  # 32 training texts: 2 steps a pass
        "trainer.max_steps=5",  # so the budget takes 3 passes (leaf_pool's max_epochs=-1)
        "trainer.precision=32",
        "eval.tasks=[scifact]",
    ]
    return {
        "out": str(out),
        "start": str(start),
        "common": {"train": TINY_TRAIN},
        "stages": [
            {"name": "teacher", "cli": "train", "overrides": ["optim.lr=1e-3"]},
            {"name": "leaf", "cli": "train", "previous_as": "teacher", "overrides": leaf},
        ],
    }


def test_previous_as_teacher_sets_the_teacher_not_the_student(tmp_path: Path) -> None:
    out, start, student = tmp_path / "chain", tmp_path / "start", tmp_path / "student"
    seen: dict[str, DictConfig] = {}

    def record(cli: str, cfg, run_dir: Path) -> None:  # stands in for the job: what the stage was given
        seen[run_dir.name] = cfg
        (run_dir / "model").mkdir(parents=True)
        (run_dir / "manifest.json").write_text("{}")

    rows = run_pipeline(OmegaConf.create(leaf_chain(out, start, student, tmp_path / "t.jsonl")), runner=record)
    assert seen["teacher"].model.path == str(start) and seen["teacher"].teacher.path is None
    assert seen["leaf"].teacher.path == str(out / "teacher" / "model")  # the previous output is the teacher ...
    assert seen["leaf"].model.path == str(student)  # ... and the student is the stage's own
    assert [(r["input_as"], r["input"]) for r in rows] == [
        ("model", [str(start)]),
        ("teacher", [str(out / "teacher" / "model")]),
    ]
    # each run's overrides, the input included, as Hydra records them (embedlab-report names runs by them)
    recorded = yaml.safe_load((out / "leaf" / ".hydra" / "overrides.yaml").read_text())
    assert recorded == [*rows[1]["overrides"], f"teacher.path={out / 'teacher' / 'model'}"]


@pytest.mark.slow
def test_leaf_stage_distils_the_previous_stage_output(tok, real_data: Path, tmp_path: Path, monkeypatch) -> None:
    """A real run: the LEAF run's manifest fingerprints the fine-tuned teacher, not the model it started from."""
    monkeypatch.setenv("EMBEDLAB_DATA", str(real_data))
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    start = tiny_encoder(tok, projection=None, seed=1).save(tmp_path / "start")
    student = tiny_encoder(tok, projection=None, seed=2).save(tmp_path / "student")
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"id": f"d{i}", "text": f"{t} ({i})"}) + "\n" for i, t in enumerate(TEXTS * 2)))
    out = tmp_path / "chain"
    rows = run_pipeline(OmegaConf.create(leaf_chain(out, start, student, texts)))

    assert [r["status"] for r in rows] == ["ran", "ran"] and finished(out / "leaf")
    assert json.loads((out / "leaf" / "manifest.json").read_text())["summary"]["steps"] == 5
    config = OmegaConf.load(out / "leaf" / "config.yaml")
    assert (config.teacher.path, config.model.path) == (str(out / "teacher" / "model"), str(student))
    recorded = json.loads((out / "leaf" / "manifest.json").read_text())["models"]["teacher"]

    def teacher_print(model: Path) -> str:  # the teacher as the LEAF stage builds it (teacher.* of its config)
        return preset_with(str(model), max_length=32, precision="fp32", backend=config.teacher.backend).fingerprint()

    assert recorded == teacher_print(out / "teacher" / "model") != teacher_print(start)
    runs = find_runs([out])  # what embedlab-report calls the two runs: what differs between them
    names = {run.path.name: name for run, name in zip(runs, configuration_names(runs), strict=True)}
    assert f"teacher.path={out / 'teacher' / 'model'}" in names["leaf"] and "optim.lr=1e-3" in names["teacher"]
