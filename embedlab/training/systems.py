"""The systems a training run compares, evaluated into one results table: the teacher, the student as shipped,
the student before and after training, and the asymmetric pairs (teacher documents × student queries).

The run directory itself holds the trained student's evaluation (the embedlab-eval schema); every other system
gets a subfolder of the same shape, per-query scores included, for paired comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from embedlab.data import get_task
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.runner import EvalSettings, evaluate_tasks
from embedlab.lit.callbacks import EvaluationCallback
from embedlab.models import Encoder
from embedlab.report.table import format_table
from embedlab.training.prepare import Prepared, shipped_model


@dataclass
class Systems:
    """Evaluates systems into `table` (system -> task -> metrics), in the order a reader compares them."""

    cfg: DictConfig
    settings: EvalSettings
    out_dir: Path
    cache: EmbeddingCache | None
    scratch: Path | None = None  # the run's folder where ranks sharing an encoding meet when nothing caches it
    table: dict[str, dict] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.cfg.eval.tasks)

    @property
    def retrieval_tasks(self) -> list[str]:
        return [t for t in self.tasks if get_task(t).kind == "retrieval"]

    def asymmetric(self, run: Prepared) -> bool:
        return bool(self.cfg.eval.asymmetric and run.teacher is not None and self.retrieval_tasks)

    def evaluate(
        self, tasks: list[str], folder: str, cache: EmbeddingCache | None, docs: Encoder, queries: Encoder | None = None
    ) -> dict:
        results = evaluate_tasks(
            tasks,
            docs,
            queries,
            settings=self.settings,
            data_root=self.cfg.data.root,
            cache=cache,
            out_dir=self.out_dir / folder,
        )
        return {r.task: r.metrics for r in results}

    def before_training(self, run: Prepared, cache: EmbeddingCache | None) -> None:
        """Teacher, shipped student, student before training, asymmetric before: frozen encoders, so cached (in
        `cache`: this one, or the one that shares the encodings over the ranks of a process group)."""
        cfg = self.cfg
        if run.teacher is not None and cfg.eval.teacher:
            self.table["teacher"] = self.evaluate(self.tasks, "teacher", cache, run.teacher)
        if not cfg.eval.before_training:
            return
        before = self.evaluate(self.tasks, "before", cache, run.student)
        if cfg.model.get("projection_dim") and not cfg.model.get("lora"):
            # The backbone as released, in its own space (no new head): what LEAF into the teacher's space cost or
            # gained. Evaluated after the student, whose cached pooled features it reuses: no second corpus pass.
            self.table["student (as shipped)"] = self.evaluate(self.tasks, "shipped", cache, shipped_model(cfg.model))
        self.table["student (before)"] = before
        if self.asymmetric(run):
            self.table["asymmetric (before)"] = self.evaluate(
                self.retrieval_tasks, "asymmetric_before", cache, run.teacher, run.student
            )

    def callbacks(self, run: Prepared) -> list[EvaluationCallback]:
        """The trained student's evaluations (during training every `eval.every_n_steps`, and at the end)."""
        common = {
            "every_n_steps": self.cfg.eval.every_n_steps,
            "settings": self.settings,
            "data_root": self.cfg.data.root,
            "cache": self.cache,
        }
        evaluators = [EvaluationCallback(self.tasks, out_dir=self.out_dir, scratch=self.scratch_for("eval"), **common)]
        if self.asymmetric(run):
            evaluators.append(
                EvaluationCallback(
                    self.retrieval_tasks,
                    document_encoder=run.teacher,
                    prefix="eval_asymmetric",
                    out_dir=self.out_dir / "asymmetric",
                    scratch=self.scratch_for("eval_asymmetric"),
                    **common,
                )
            )
        return evaluators

    def scratch_for(self, name: str) -> Path | None:
        return self.scratch / name if self.scratch is not None else None

    def after_training(self, evaluators: list[EvaluationCallback]) -> None:
        for name, evaluator in zip(("student", "asymmetric"), evaluators, strict=False):
            self.table[name] = {r.task: r.metrics for r in evaluator.last}


def heldout_cosines(run: Prepared, batch_size: int) -> np.ndarray | None:
    """Per held-out text (never trained on), the cosine between the student's and the teacher's vectors; None
    without a teacher table or held-out texts."""
    rows = np.asarray(run.data.heldout_rows, dtype=np.int64)
    if run.table is None or not len(rows):
        return None
    s = np.asarray(run.student.encode([run.texts[i] for i in rows], batch_size=batch_size), dtype=np.float64)
    t = np.asarray(run.table.embeddings[rows], dtype=np.float64)
    return (s * t).sum(1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(t, axis=1))


def results_table(systems: dict[str, dict], summary: dict) -> str:
    """One row per system, each task's main metric and its share of the teacher's score; then the summary."""
    tasks = list(dict.fromkeys(t for metrics in systems.values() for t in metrics))
    main = {t: get_task(t).main_metric for t in tasks}
    rows, columns, headers = [], ["system"], ["system"]
    for t in tasks:
        columns += [t, f"{t}%"]
        headers += [f"{t} {main[t]}", "% teacher"]
    teacher = systems.get("teacher", {})
    for name, metrics in systems.items():
        row = {"system": name}
        for t in tasks:
            value = metrics.get(t, {}).get(main[t])
            row[t] = value
            reference = teacher.get(t, {}).get(main[t])
            row[f"{t}%"] = f"{100 * value / reference:.1f}%" if value is not None and reference else None
        rows.append(row)
    extras = ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items() if v is not None
    )
    return f"{format_table(rows, columns, headers)}\n{extras}"
