"""The analysis notebooks executed end to end (nbclient, the venv's kernel) against a sweep and a LEAF run that the
tests produce, or the experiments' records committed in experiments/records, and stored without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from leaf_run import tiny_leaf_run
from nbclient import NotebookClient
from sweeps import make_sweep

from embedlab.report import leaf

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    """Run every cell; a failing cell raises with its traceback. The kernel inherits os.environ."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", **env}.items():
            mp.setenv(key, value)
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All text the cells showed, and how many PNG images."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text += [data.get("text/markdown", ""), data.get("text/plain", ""), data.get("text/html", "")]
            images += "image/png" in data
    return "\n".join(map(str, text)), images


@pytest.mark.parametrize(
    "name", ["analysis.ipynb", "leaf_alignment.ipynb", "train_from_python.ipynb", "experiments.ipynb"]
)
def test_notebooks_are_stored_without_outputs(name: str) -> None:
    raw = json.loads((NOTEBOOKS / name).read_text())
    code = [c for c in raw["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow  # starts a Jupyter kernel (~5 s)
def test_analysis_notebook_renders_the_table_and_figures(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    nb = execute("analysis.ipynb", {"EMBEDLAB_SWEEP": str(sweep), "EMBEDLAB_RESAMPLES": "1000"})
    text, images = outputs(nb)
    assert "6 runs under" in text and "varied: loss = infonce, focal_infonce" in text
    assert "| loss=infonce (baseline) | 0, 1, 2 |" in text and "| loss=focal_infonce | 0, 1, 2 |" in text
    assert images == 4  # two bar charts (two metrics), metric vs dim, metric vs precision
    assert not (sweep / "report").exists()  # figures go to a temporary folder, not into the sweep


@pytest.fixture(scope="module")
def leaf_run_dir(tmp_path_factory, tok, real_data: Path) -> Path:
    root = tmp_path_factory.mktemp("leaf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBEDLAB_CACHE", str(root / "cache"))
        return tiny_leaf_run(root, tok, real_data)


@pytest.mark.slow  # a real (tiny) LEAF training run on the real SciFact and STSb data
def test_a_leaf_run_holds_what_the_notebook_reads(leaf_run_dir: Path) -> None:
    assert list(leaf.systems(leaf_run_dir)) == list(leaf.SYSTEMS)
    cos = leaf.heldout_cosines(leaf_run_dir)
    assert cos["before"].shape == cos["after"].shape == (8,) and (abs(cos["after"]) <= 1 + 1e-6).all()
    table = leaf.grid_table(leaf_run_dir, "scifact", "ndcg_at_10")
    assert {(r["system"], r["dim"]) for r in table} == {(s, d) for s in leaf.SYSTEMS for d in (32, 16, 8)}
    full = next(r for r in table if r["system"] == "teacher" and r["dim"] == 32)
    assert full["float32 retained"] == pytest.approx(1.0)
    assert [k for k in full if k in ("float32", "int8", "binary")] == ["float32", "int8", "binary"]  # most bits first
    test = leaf.asymmetric_vs_symmetric(leaf_run_dir, "scifact", "ndcg_at_10", resamples=200)
    assert test.n == 10 and 0 < test.p_value <= 1


@pytest.mark.slow
def test_the_shipped_row_is_the_student_model_as_released(leaf_run_dir: Path, real_data: Path) -> None:
    """ "student (as shipped)": the student folder evaluated by itself (no projection), not the projected student."""
    from embedlab.eval.runner import EvalSettings, evaluate_task
    from embedlab.models import Encoder

    released = Encoder.from_pretrained(str(leaf_run_dir.parent / "student_model"), precision="fp32")
    direct = evaluate_task("scifact", released, settings=EvalSettings(limit=10, max_docs=100), data_root=real_data)
    shipped = json.loads((leaf_run_dir / "shipped" / "metrics.json").read_text())["scifact"]
    before = json.loads((leaf_run_dir / "before" / "metrics.json").read_text())["scifact"]
    assert shipped["ndcg_at_10"] == pytest.approx(direct.metrics["ndcg_at_10"], abs=1e-9)
    assert shipped != before
    assert list(json.loads((leaf_run_dir / "results.json").read_text()))[:3] == [
        "teacher",
        "student (as shipped)",
        "student (before)",
    ]


@pytest.mark.slow
def test_leaf_alignment_notebook_renders(leaf_run_dir: Path) -> None:
    nb = execute("leaf_alignment.ipynb", {"EMBEDLAB_RUN": str(leaf_run_dir)})
    text, images = outputs(nb)
    assert "% of teacher" in text and "asymmetric (before)" in text
    assert "texts whose cosine rose with training" in text and "Δ asymmetric − symmetric" in text
    assert "float32 retained" in text
    assert images == 3  # cosine histogram, metric vs dim, metric vs precision


def test_bad_run_directories_name_the_problem(tmp_path: Path) -> None:
    from embedlab.errors import DataFormatError, EmbedlabError

    with pytest.raises(EmbedlabError, match="not an embedlab-train run directory"):
        leaf.systems(tmp_path)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(EmbedlabError, match=r"heldout_cosine.jsonl is missing"):
        leaf.heldout_cosines(tmp_path)
    with pytest.raises(EmbedlabError, match="needs both 'student' and 'asymmetric'"):
        leaf.asymmetric_vs_symmetric(tmp_path, "scifact", "ndcg_at_10")
    (tmp_path / "heldout_cosine.jsonl").write_text('{"before": 0.5, "after": 0.6}\n{"before": 0.5}\n')
    with pytest.raises(DataFormatError, match=r"heldout_cosine.jsonl, line 2: expected 'before' and 'after'"):
        leaf.heldout_cosines(tmp_path)
    assert leaf.systems(tmp_path) == {}  # a run whose systems were not evaluated (eval.before_training=false, 0 steps)


@pytest.mark.slow  # a real 2-step MiniLM run on SciFact through the Python entry, in a Jupyter kernel
def test_train_from_python_notebook(tmp_path: Path, real_data: Path) -> None:
    run = tmp_path / "run"
    env = {"EMBEDLAB_RUN": str(run), "EMBEDLAB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    text, _ = outputs(execute("train_from_python.ipynb", env))
    metrics = json.loads((run / "metrics.json").read_text())
    before = json.loads((run / "before" / "metrics.json").read_text())
    assert f"'student (before)': {{'scifact': {round(before['scifact']['ndcg_at_10'], 4)}}}" in text
    assert f"'student': {{'scifact': {round(metrics['scifact']['ndcg_at_10'], 4)}}}" in text
    assert "steps: 2 | precision: EMBEDLAB_AUTO_PRECISION=fp32 -> fp32" in text


RECORDS = REPO / "experiments" / "records"


@pytest.mark.slow  # a Jupyter kernel; paired tests with 10,000 sign patterns over the recorded runs
def test_experiments_notebook_draws_the_recorded_results() -> None:
    """The notebook recomputes, from the committed records, every number the LEAF run's own report wrote."""
    saved = json.loads((REPO / "experiments" / "records" / "leaf_teacher" / "leaf_teacher.json").read_text())
    text, images = outputs(execute("experiments.ipynb", {}))
    assert "the same numbers as the run's leaf_teacher.json: True" in text
    for row in saved["headline"]["systems"]:
        assert f"| {row['system']} | {row['seeds']} | {row['ndcg_at_10']:.4f} |" in text
    assert len([r for r in saved["curve"] if f"| leaf/{r['run']} (seed {r['seed']}) |" in text]) == len(saved["curve"])
    # each recorded sweep: its comparison recomputed equals the sweep's own report; KaLM-V2's figures: two metrics'
    # bars and three training-log curves
    sweeps = {
        "kalm_v2_sweep": "report",
        "lg_anna_lists": "test/report",
        "lg_anna_decoder": "report",
        "kalm_v2_genq": "report_genq",
    }
    recorded = [n for n, rep in sweeps.items() if (RECORDS / n / rep / "scifact_comparison.md").exists()]
    assert "kalm_v2_sweep" in recorded
    assert [n for n in sweeps if f"{n}: the same table as the sweep's own report: True" in text] == recorded
    assert [n for n in sweeps if f"{n}: not recorded yet" in text] == [n for n in sweeps if n not in recorded]
    figures = {"kalm_v2_sweep": 5, "lg_anna_lists": 2, "lg_anna_decoder": 1, "kalm_v2_genq": 2}
    # LEAF trained longer: the dev grid's choice recomputed equals the script's, and one figure (the loss curves)
    steps = (RECORDS / "leaf_steps" / "dev").is_dir()
    assert ("the same choice as the script's dev_choices.txt: True" in text) == steps
    assert ("leaf_steps: not recorded yet" in text) != steps
    assert images == 2 + steps + sum(figures[n] for n in recorded)  # + the LEAF systems' bars and curve
