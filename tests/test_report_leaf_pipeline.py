"""The leaf_teacher pipeline's headline and curve (embedlab/report/leaf_pipeline.py), checked against values worked
out by hand on a folder in the pipeline's layout, and the record that experiments/record.py makes of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embedlab.report import leaf_pipeline as lp

REPO = Path(__file__).resolve().parents[1]
QUERIES = [str(i) for i in range(6)]  # 2^6 = 64 sign patterns: the randomization test is exact


def system(folder: Path, per_query: list[float], stsb: float | None = 0.8, dev: bool = False) -> None:
    """An evaluated system: metrics.json (mean of `per_query`) and per_query/scifact.jsonl (with a column the
    record drops); STS pair scores, which a record leaves out."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"scifact": {"ndcg_at_10": sum(per_query) / len(per_query)}}
    if stsb is not None:
        metrics["stsb"] = {"cosine_spearman": stsb}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if not dev:
        (folder / "per_query").mkdir(exist_ok=True)
        rows = [{"query_id": q, "ndcg_at_10": v, "map_at_1": 0.5} for q, v in zip(QUERIES, per_query, strict=True)]
        (folder / "per_query" / "scifact.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / "per_query" / "stsb.jsonl").write_text(json.dumps({"pair": 0, "cosine": 0.5, "gold": 3.0}) + "\n")


def leaf_run(run: Path, seed: int, student: float, asym: float, teacher: float = 0.8) -> None:
    system(run, [student] * 6, stsb=0.7 + seed / 100)
    system(run / "asymmetric", [asym] * 6, stsb=None)
    system(run / "teacher", [teacher] * 6)
    summary = {"steps": 320, "heldout_cosine_before": 0.5, "heldout_cosine": 0.9}
    (run / "manifest.json").write_text(json.dumps({"seed": seed, "summary": summary}))
    (run / "config.yaml").write_text("seed: 0\n")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n")
    (run / "model").mkdir()
    (run / "model" / "model.safetensors").write_bytes(b"weights")


@pytest.fixture
def pipeline_out(tmp_path: Path) -> Path:
    out = tmp_path / "leaf_teacher"
    system(out / "pipeline" / "teacher", [0.75], dev=True)
    system(out / "baselines" / "shipped_dev", [0.70], dev=True)
    system(out / "baselines" / "shipped", [0.6] * 6, stsb=0.82)
    for seed, value in enumerate([0.60, 0.62, 0.64]):
        system(out / "baselines" / "finetune" / str(seed), [value] * 6, stsb=0.80)
    for i, (student, asym) in enumerate([(0.70, 0.76), (0.72, 0.76), (0.74, 0.76), (0.64, 0.68)]):
        leaf_run(out / "pipeline" / "leaf" / str(i), seed=min(i, 2) if i < 3 else 0, student=student, asym=asym)
    return out


def test_headline_matches_hand_computed_values(pipeline_out: Path) -> None:
    head = lp.headline(pipeline_out, resamples=1000)
    rows = {r["system"]: r for r in head["systems"]}
    assert rows[lp.STUDENT]["ndcg_at_10"] == pytest.approx(0.72)  # (0.70 + 0.72 + 0.74) / 3
    assert rows[lp.STUDENT]["std"] == pytest.approx(0.02)  # sample std of 0.70, 0.72, 0.74
    assert rows[lp.STUDENT]["of_teacher"] == pytest.approx(0.72 / 0.8)
    assert rows[lp.ASYMMETRIC]["stsb"] is None and rows[lp.STUDENT]["stsb"] == pytest.approx(0.71)
    assert rows[lp.SHIPPED]["std"] is None and rows[lp.SHIPPED]["seeds"] == 1
    tests = {(t["system"], t["baseline"]): t for t in head["tests"]}
    # every query moves by the same amount: 2 of the 64 sign patterns (all +, all -) reach |mean| -> p = 1/32
    student_vs_shipped = tests[(lp.STUDENT, lp.SHIPPED)]
    assert student_vs_shipped["diff"] == pytest.approx(0.12) and student_vs_shipped["p"] == pytest.approx(1 / 32)
    assert tests[(lp.ASYMMETRIC, lp.FINETUNED)]["diff"] == pytest.approx(0.76 - 0.62)
    # five equal raw p of 1/32: Holm multiplies the smallest by 5, and the running max keeps the rest there
    assert [t["p_holm"] for t in head["tests"]] == pytest.approx([5 / 32] * 5)
    assert head["dev"] == pytest.approx({"teacher": 0.75, "shipped": 0.70})


def test_curve_reads_every_leaf_run(pipeline_out: Path) -> None:
    rows = lp.curve(pipeline_out, {"0": 1000, "1": 1000, "2": 1000, "3": 100})
    assert [r["run"] for r in rows] == ["0", "1", "2", "3"]
    last = rows[-1]
    assert last["texts"] == 100 and last["seed"] == 0 and last["steps"] == 320
    assert last["student_of_teacher"] == pytest.approx(0.64 / 0.8)
    assert last["asymmetric_of_teacher"] == pytest.approx(0.68 / 0.8)
    text = lp.to_markdown(lp.headline(pipeline_out, resamples=100), rows)
    assert "| LEAF student | 3 | 0.7200 | 90.0% | 0.7100 |" in text
    assert "| 100 | leaf/3 (seed 0) | 320 | 0.6400 | 80.0% | 0.6800 | 85.0% |" in text


def test_another_layout_reads_its_leaf_runs_and_names_its_teacher(pipeline_out: Path, tmp_path: Path) -> None:
    """experiments/leaf_steps.sh's layout: the LEAF runs in test/ beside their <i>.lock files, the teacher elsewhere."""
    (pipeline_out / "pipeline" / "leaf").rename(pipeline_out / "test")
    (pipeline_out / "test" / "3.lock").touch()
    teacher = tmp_path / "elsewhere"
    (pipeline_out / "pipeline" / "teacher").rename(teacher)
    system(teacher, [0.76], dev=True)
    head = lp.headline(pipeline_out, resamples=100, leaf="test", teacher=teacher)
    assert head["dev"]["teacher"] == pytest.approx(0.76)
    rows = {r["system"]: r for r in head["systems"]}
    assert rows[lp.STUDENT]["ndcg_at_10"] == pytest.approx(0.72)
    assert [r["run"] for r in lp.curve(pipeline_out, dict.fromkeys("0123", 10), leaf="test")] == ["0", "1", "2", "3"]


def test_figures_are_written(pipeline_out: Path, tmp_path: Path) -> None:
    head = lp.headline(pipeline_out, resamples=100)
    paths = lp.figures(head, lp.curve(pipeline_out, {"0": 1000, "1": 1000, "2": 1000, "3": 100}), tmp_path / "f")
    assert [p.name for p in paths] == ["leaf_teacher_systems.png", "leaf_teacher_curve.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_missing_run_is_one_clear_error(pipeline_out: Path) -> None:
    (pipeline_out / "baselines" / "finetune" / "2" / "metrics.json").unlink()
    with pytest.raises(lp.EmbedlabError, match=r"finetune/2/metrics.json is missing"):
        lp.headline(pipeline_out)


def test_a_record_keeps_what_the_report_reads_and_nothing_heavy(pipeline_out: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    (pipeline_out / "dev_choices.txt").write_text("chosen on dev: lr 1e-4\n")
    (pipeline_out / "pipeline" / "teacher" / "train.log").write_text("progress\n")
    subprocess.run([sys.executable, str(REPO / "experiments" / "record.py"), str(pipeline_out), str(record)],
                   check=True, capture_output=True, cwd=REPO)  # fmt: skip
    assert lp.headline(record, resamples=1000) == lp.headline(pipeline_out, resamples=1000)
    assert not list(record.rglob("model")) and not list(record.rglob("stsb.jsonl"))
    assert (record / "dev_choices.txt").read_text() == "chosen on dev: lr 1e-4\n"
    assert not list(record.rglob("train.log"))
    row = json.loads((record / "baselines" / "shipped" / "per_query" / "scifact.jsonl").read_text().splitlines()[0])
    assert row == {"query_id": "0", "ndcg_at_10": 0.6}  # map_at_1 cut
    info = json.loads((record / "RECORD.json").read_text())
    assert info["source"] == str(pipeline_out) and set(info["recorded_by"]) == {"commit", "dirty"}


def test_a_rerecord_replaces_the_record_and_leaves_out_unfinished_runs(pipeline_out: Path, tmp_path: Path) -> None:
    record, command = tmp_path / "record", [sys.executable, str(REPO / "experiments" / "record.py")]
    subprocess.run([*command, str(pipeline_out), str(record)], check=True, capture_output=True, cwd=REPO)
    leaf = record / "pipeline" / "leaf"
    assert (leaf / "2" / "metrics.json").exists() and (leaf / "2" / ".hydra" / "overrides.yaml").exists()
    (pipeline_out / "pipeline" / "leaf" / "2" / "metrics.json").unlink()  # as if seed 2 were still running
    subprocess.run([*command, str(pipeline_out), str(record)], check=True, capture_output=True, cwd=REPO)
    assert not (leaf / "2").exists() and (leaf / "1" / "config.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaf_teacher", "record"]  # no partial or old copy beside it


def test_a_bad_per_query_line_is_one_clear_error(pipeline_out: Path, tmp_path: Path) -> None:
    bad = pipeline_out / "baselines" / "shipped" / "per_query" / "scifact.jsonl"
    bad.write_text(bad.read_text() + '{"query_id": "6", "ndcg_at_10": \n')
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "record.py"), str(pipeline_out),
                           str(tmp_path / "record")], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{bad}, line 7: not valid JSON" in done.stderr


def dev_run(root: Path, name: str, asym: float, before: float, after: float, stsb: float | None = None) -> None:
    run = root / name
    run.mkdir(parents=True)
    student = {"scifact": {"ndcg_at_10": asym + 0.05}} | ({"stsb": {"cosine_spearman": stsb}} if stsb else {})
    results = {"asymmetric": {"scifact": {"ndcg_at_10": asym}}, "student": student}
    if stsb:  # evaluated before training too: the closed-form start
        results |= {"asymmetric (before)": {"scifact": {"ndcg_at_10": 0.5}}, "student (before)": {"scifact": {}}}
    (run / "results.json").write_text(json.dumps(results))
    summary = {"steps": int(name.split("_")[1]), "heldout_cosine_before": before, "heldout_cosine": after}
    (run / "manifest.json").write_text(json.dumps({"summary": summary}))
    (run / "config.yaml").write_text(f"trainer:\n  max_steps: {summary['steps']}\n")


def test_the_dev_rule_skips_a_run_whose_heldout_cosine_fell(tmp_path: Path) -> None:
    dev_run(tmp_path, "45k_320", 0.55, 0.73, 0.76, stsb=0.85)
    dev_run(tmp_path, "45k_1280", 0.58, 0.73, 0.79)
    dev_run(tmp_path, "45k_2560", 0.61, 0.73, 0.70)  # the highest, but its cosine fell: a collapse
    (tmp_path / "45k_5120").mkdir()  # unfinished: no manifest
    rows = lp.dev_runs(tmp_path)
    assert [(r["run"], r["steps"]) for r in rows] == [("45k_1280", 1280), ("45k_2560", 2560), ("45k_320", 320)]
    assert rows[2]["student"] == pytest.approx(0.60) and rows[2]["stsb"] == 0.85 and rows[0]["stsb"] is None
    assert lp.dev_choice(rows)["run"] == "45k_1280"
    assert (rows[2]["asym_start"], rows[2]["student_start"], rows[0]["asym_start"]) == (0.5, None, None)
    assert lp.dev_markdown(rows).splitlines()[4] == "| 45k_320 | 0.5000 -> 0.5500 | 0.6000 | 0.8500 | 0.730 -> 0.760 |"
    assert lp.dev_markdown(rows).splitlines()[2:4] == [
        "| **45k_1280** (chosen) | 0.5800 | 0.6300 | — | 0.730 -> 0.790 |",
        "| 45k_2560 | 0.6100 | 0.6600 | — | 0.730 -> 0.700 |",
    ]
    assert [r["run"] for r in lp.dev_runs(tmp_path, by="trainer.max_steps")] == ["1280", "2560", "320"]
    for row in rows:
        row["after"] = 0.70  # every cosine fell: the rule falls back to the highest of all
    assert lp.dev_choice(rows)["run"] == "45k_2560"
