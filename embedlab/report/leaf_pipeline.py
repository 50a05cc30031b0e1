"""The LEAF-from-a-stronger-teacher pipeline read for its headline (experiments/leaf_teacher.sh, conf/pipeline/
leaf_teacher.yaml): the teacher, the student as shipped, the student fine-tuned directly on the teacher's labels, the
LEAF student and the asymmetric pair on SciFact test, paired tests between them (Holm-corrected together), and the
curve of each LEAF run's share of its teacher against the number of distillation texts; and the LEAF dev rule
(`dev_runs`, `dev_choice`: experiments/leaf_lr_dev.sh, leaf_steps.sh).

The folder layout read (`out`, or a record of it made by experiments/record.py):
  pipeline/teacher                 the fine-tuned teacher (its metrics.json: SciFact dev); `teacher=` names another
  pipeline/leaf/<i>                LEAF runs (embedlab.report.leaf's layout: teacher/, asymmetric/, ...); 0-2 are the
                                   headline's seeds on the whole pool, the others the curve's smaller pools; `leaf=`
                                   names another folder under `out` (experiments/leaf_steps.sh: test/)
  baselines/shipped, shipped_dev   the student as released on test (+ STSb) and on dev
  baselines/finetune/<seed>        the student fine-tuned on the same labels with the teacher's recipe
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from omegaconf import OmegaConf

from embedlab.errors import EmbedlabError
from embedlab.report.plots import bar_png, line_png
from embedlab.report.significance import holm, metric_by_query, paired_arrays, paired_test

TASK, METRIC = "scifact", "ndcg_at_10"
LEAF_RUNS = "pipeline/leaf"  # the LEAF runs' folder under `out` (experiments/leaf_teacher.sh's layout)
HEADLINE_SEEDS = 3  # leaf/0..2: the whole pool, seeds 0-2
TEACHER, SHIPPED, FINETUNED, STUDENT, ASYMMETRIC = (
    "teacher (mpnet fine-tuned on fit claims)",
    "MiniLM as shipped",
    "MiniLM fine-tuned on the same labels",
    "LEAF student",
    "LEAF asymmetric (teacher docs x student queries)",
)
TESTS = [(STUDENT, SHIPPED), (STUDENT, FINETUNED), (ASYMMETRIC, SHIPPED), (ASYMMETRIC, FINETUNED), (TEACHER, SHIPPED)]


def _metric(run: Path, task: str = TASK, metric: str = METRIC) -> float:
    path = run / "metrics.json"
    if not path.is_file():
        raise EmbedlabError(f"{path} is missing: has this run finished?")
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))[task][metric])
    except KeyError:
        raise EmbedlabError(f"{path} has no {task}/{metric}") from None


def mean_metric(runs: list[Path], task: str = TASK, metric: str = METRIC) -> float:
    return sum(_metric(r, task, metric) for r in runs) / len(runs)


def systems(out: str | Path, leaf: str = LEAF_RUNS) -> dict[str, list[Path]]:
    """Headline system -> its run folders (one per seed); the LEAF runs 0-2 under `out`/`leaf`."""
    out = Path(out)
    leaf, base = out / leaf, out / "baselines"
    seeds = [leaf / str(i) for i in range(HEADLINE_SEEDS)]
    return {
        TEACHER: [leaf / "0" / "teacher"],  # the teacher evaluated inside the first LEAF run, on test
        SHIPPED: [base / "shipped"],
        FINETUNED: [base / "finetune" / str(i) for i in range(HEADLINE_SEEDS)],
        STUDENT: seeds,
        ASYMMETRIC: [r / "asymmetric" for r in seeds],
    }


def headline(
    out: str | Path, resamples: int = 10_000, leaf: str = LEAF_RUNS, teacher: str | Path | None = None
) -> dict:
    """{"systems": [...], "tests": [...], "dev": {...}}: SciFact test nDCG@10 (mean and std over seeds), share of the
    teacher and STSb Spearman per system; per test the mean per-query difference, the raw randomization p (seeds
    averaged per query, as embedlab-report) and the Holm-adjusted p over the five tests. `teacher`: the teacher's
    training run, whose metrics.json is its SciFact dev score (default `out`/pipeline/teacher)."""
    out = Path(out)
    found = systems(out, leaf)
    top = mean_metric(found[TEACHER])
    rows = []
    for name, runs in found.items():
        values = [_metric(r) for r in runs]
        score = sum(values) / len(values)
        std = statistics.stdev(values) if len(values) > 1 else None
        sts = None if name == ASYMMETRIC else mean_metric(runs, "stsb", "cosine_spearman")  # no STS for a pair
        rows.append(
            {"system": name, "seeds": len(runs), METRIC: score, "std": std, "of_teacher": score / top, "stsb": sts}
        )
    by_query = {name: metric_by_query(runs, TASK, METRIC) for name, runs in found.items()}
    tests = []
    for system, baseline in TESTS:
        x, y = paired_arrays(by_query[baseline], by_query[system], (baseline, system), TASK)
        result = paired_test(x, y, "randomization", resamples=resamples, seed=0)
        tests.append({"system": system, "baseline": baseline, "diff": result.mean_diff, "p": result.p_value})
    for test, adjusted in zip(tests, holm([t["p"] for t in tests]), strict=True):
        test["p_holm"] = adjusted
    teacher = out / "pipeline" / "teacher" if teacher is None else Path(teacher)
    dev = {"teacher": _metric(teacher), "shipped": _metric(out / "baselines" / "shipped_dev")}
    return {"systems": rows, "tests": tests, "dev": dev}


def leaf_runs(out: str | Path, leaf: str = LEAF_RUNS) -> list[Path]:
    """The LEAF run folders `out`/`leaf`/<i> in order of i (not the <i>.lock files two-copy scripts leave beside)."""
    return sorted((p for p in (Path(out) / leaf).iterdir() if p.is_dir()), key=lambda p: int(p.name))


def curve(out: str | Path, pool_texts: dict[str, int], leaf: str = LEAF_RUNS) -> list[dict]:
    """One row per LEAF run (`out`/`leaf`/<i>): its pool size (`pool_texts[i]`, counted from the data by the
    caller), seed, steps, student and asymmetric nDCG@10 and their share of the run's own teacher, STSb, and the
    held-out student–teacher cosine before -> after training."""
    rows = []
    for run in leaf_runs(out, leaf):
        manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        top = _metric(run / "teacher")
        student, asym = _metric(run), _metric(run / "asymmetric")
        summary = manifest["summary"]
        rows.append(
            {
                "run": run.name,
                "texts": pool_texts[run.name],
                "seed": manifest["seed"],
                "steps": summary["steps"],
                "student": student,
                "student_of_teacher": student / top,
                "asymmetric": asym,
                "asymmetric_of_teacher": asym / top,
                "stsb": _metric(run, "stsb", "cosine_spearman"),
                "heldout_cosine_before": summary["heldout_cosine_before"],
                "heldout_cosine": summary["heldout_cosine"],
            }
        )
    return rows


def to_markdown(head: dict, rows: list[dict]) -> str:
    """The headline table, the tests and the curve as markdown (leaf_teacher.md)."""
    lines = ["| system | seeds | SciFact test nDCG@10 | % of teacher | STSb Spearman |", "|---|---:|---:|---:|---:|"]
    for r in head["systems"]:
        sts = "—" if r["stsb"] is None else f"{r['stsb']:.4f}"
        lines.append(f"| {r['system']} | {r['seeds']} | {r[METRIC]:.4f} | {100 * r['of_teacher']:.1f}% | {sts} |")
    n = len(head["tests"])
    lines += ["", f"| comparison (paired over test queries) | Δ nDCG@10 | p raw | p Holm ({n} tests) |"]
    lines.append("|---|---:|---:|---:|")
    for t in head["tests"]:
        lines.append(f"| {t['system']} − {t['baseline']} | {t['diff']:+.4f} | {t['p']:.4f} | {t['p_holm']:.4f} |")
    dev = head["dev"]
    lines += ["", f"SciFact dev nDCG@10: teacher {dev['teacher']:.4f}, MiniLM as shipped {dev['shipped']:.4f} "
              "(no paired test)", ""]  # fmt: skip
    lines += ["| pool (texts, 500 held out) | run | steps | student nDCG@10 | % teacher | asymmetric | % teacher | "
              "STSb | held-out cosine |", "|---:|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['texts']:,} | leaf/{r['run']} (seed {r['seed']}) | {r['steps']} | {r['student']:.4f} | "
            f"{100 * r['student_of_teacher']:.1f}% | {r['asymmetric']:.4f} | {100 * r['asymmetric_of_teacher']:.1f}% "
            f"| {r['stsb']:.4f} | {r['heldout_cosine_before']:.3f} -> {r['heldout_cosine']:.3f} |"
        )
    lines += ["", "Held-out cosine: student vs teacher on 500 texts held out of each run's own pool (not comparable "
              "across pools)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def figures(head: dict, rows: list[dict], out_dir: str | Path) -> list[Path]:
    """Two PNGs: the headline systems' nDCG@10 (std over seeds, Holm p against the shipped MiniLM above the bars),
    and the curve — student and asymmetric pair as % of the teacher against the pool size (seeds averaged)."""
    out_dir = Path(out_dir)
    p_vs_shipped = {t["system"]: t["p_holm"] for t in head["tests"] if t["baseline"] == SHIPPED}
    systems = head["systems"]
    bars = bar_png(
        out_dir / "leaf_teacher_systems.png",
        [r["system"] for r in systems],
        [r[METRIC] for r in systems],
        [r["std"] for r in systems],
        title="SciFact test nDCG@10 (p Holm vs MiniLM as shipped)",
        ylabel="nDCG@10",
        notes=[f"p={p_vs_shipped[r['system']]:.3g}" if r["system"] in p_vs_shipped else "" for r in systems],
    )
    sizes = sorted({r["texts"] for r in rows})
    series = {}
    for key, name in (("student_of_teacher", "LEAF student"), ("asymmetric_of_teacher", "asymmetric pair")):
        means = [statistics.mean(100 * r[key] for r in rows if r["texts"] == n) for n in sizes]
        series[name] = (sizes, means)
    line = line_png(
        out_dir / "leaf_teacher_curve.png",
        series,
        title="LEAF: share of the teacher's SciFact nDCG@10 by distillation texts",
        xlabel="distillation texts (pool size)",
        ylabel="% of teacher nDCG@10",
        logx=True,
    )
    return [bars, line]


def dev_runs(runs: str | Path, by: str | None = None) -> list[dict]:
    """One row per finished dev run under `runs` (<run>/manifest.json), by folder name: the run's name (or with `by`
    its resolved config value, e.g. optim.lr), steps, dev asymmetric and student nDCG@10 after training and at the
    start (the closed-form student, evaluated before training; None if it was not), STSb dev Spearman (None without
    it) and the held-out student–teacher cosine before -> after."""
    rows = []
    for manifest in sorted(Path(runs).glob("*/manifest.json")):
        run = manifest.parent
        results = json.loads((run / "results.json").read_text(encoding="utf-8"))
        summary = json.loads(manifest.read_text(encoding="utf-8"))["summary"]
        label = str(OmegaConf.select(OmegaConf.load(run / "config.yaml"), by)) if by else run.name
        rows.append(
            {
                "run": label,
                "steps": summary.get("steps"),
                "asym": results["asymmetric"][TASK][METRIC],
                "student": results["student"][TASK][METRIC],
                "asym_start": results.get("asymmetric (before)", {}).get(TASK, {}).get(METRIC),
                "student_start": results.get("student (before)", {}).get(TASK, {}).get(METRIC),
                "stsb": results["student"].get("stsb", {}).get("cosine_spearman"),
                "before": summary["heldout_cosine_before"],
                "after": summary["heldout_cosine"],
            }
        )
    return rows


def dev_choice(rows: list[dict]) -> dict:
    """The LEAF dev rule, fixed before the runs: the highest dev asymmetric nDCG@10 among the runs whose held-out
    cosine did not fall (a collapse shows there first); among all runs if every one fell."""
    kept = [r for r in rows if r["after"] >= r["before"]] or rows
    return max(kept, key=lambda r: r["asym"])


def dev_markdown(rows: list[dict], by: str = "run") -> str:
    """The dev runs as a markdown table, the chosen one in bold; nDCG@10 as start -> trained where the start was
    evaluated."""
    chosen = dev_choice(rows)["run"] if rows else None

    def moved(start: float | None, after: float) -> str:
        return f"{after:.4f}" if start is None else f"{start:.4f} -> {after:.4f}"

    lines = [f"| {by} | dev asymmetric nDCG@10 | dev student nDCG@10 | STSb dev Spearman | held-out cosine |",
             "|---|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        name = f"**{r['run']}** (chosen)" if r["run"] == chosen else r["run"]
        sts = "—" if r["stsb"] is None else f"{r['stsb']:.4f}"
        asym, student = moved(r["asym_start"], r["asym"]), moved(r["student_start"], r["student"])
        lines.append(f"| {name} | {asym} | {student} | {sts} | {r['before']:.3f} -> {r['after']:.3f} |")
    return "\n".join(lines) + "\n"
