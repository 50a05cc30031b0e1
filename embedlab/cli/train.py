"""`embedlab-train`: train a student encoder from Hydra config, evaluate it, export it, record the run.

embedlab-train                                         # MiniLM + InfoNCE on SciFact train, eval on SciFact test
embedlab-train loss=focal_infonce loss.focal_infonce.gamma=2
embedlab-train experiment=leaf_demo                    # LEAF: mpnet teacher -> MiniLM + projection 384->768
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from embedlab.cli.common import CONF_DIR, build_encoder, encoder_config, run_hydra_job
from embedlab.cli.train_negatives import check_mining, mine_before_training
from embedlab.data import get_task
from embedlab.data.collate import Collator
from embedlab.data.training import TextExample, example_text, read_pairs, read_scored, read_texts
from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.runner import EvalSettings, check_settings, evaluate_tasks
from embedlab.io import fingerprint, write_json_atomic, write_text_atomic
from embedlab.lit.callbacks import EvaluationCallback
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.lit.teacher import TeacherTable
from embedlab.losses import build_loss
from embedlab.manifest import build_manifest
from embedlab.models import Encoder
from embedlab.models.projection import fit_ridge, set_linear
from embedlab.report.table import format_table

log = logging.getLogger("embedlab.train")


def read_examples(data: DictConfig, root: str | None) -> dict[str, list]:
    """Training examples by source name (one source per batch when there are several)."""
    if data.kind == "text":
        return {src.name: read_texts(src, root) for src in data.sources}
    if data.kind == "pairs":
        return {data.path: read_pairs(data.path, data.split, data.negatives_file, data.num_negatives, root)}
    if data.kind == "scored":
        return {Path(data.path).stem: read_scored(data.path, data.num_candidates)}
    raise ConfigError(f"data.kind must be text, pairs or scored, got {data.kind!r}")


def build_teacher(
    cfg: DictConfig, groups: list[list[str]], ids: list[str], cache: EmbeddingCache | None, student_dim: int
):
    """(teacher encoder or None, teacher table or None) from the `teacher` group; `groups`: texts per source.

    A student/teacher size mismatch is reported as soon as the teacher is loaded, before it embeds anything."""
    t = cfg.teacher
    if t.get("file"):
        return None, TeacherTable.from_file(t.file, ids)
    if not t.get("path"):
        return None, None
    settings = {"max_length": t.get("max_length"), "precision": t.get("precision", "fp32")}
    node = OmegaConf.merge(
        OmegaConf.structured(encoder_config(t.path).__dict__), {k: v for k, v in settings.items() if v is not None}
    )
    teacher = build_encoder(node)
    if teacher.dim != student_dim:
        raise ConfigError(
            f"the student's embeddings have {student_dim} dims but the teacher's ({teacher.name}) have {teacher.dim}: "
            f"set model.projection_dim={teacher.dim}"
        )
    if not t.get("cache", True):
        return teacher, None
    log.info("teacher %s: embedding %d training texts (cached)", teacher.name, sum(map(len, groups)))
    return teacher, TeacherTable.from_encoder(teacher, groups, cache, batch_size=t.get("batch_size", 32))


def init_projection(
    student: Encoder,
    texts: list[str],
    rows: list[int],
    table: TeacherTable,
    ridge: float,
    cache: EmbeddingCache | None,
    batch_size: int,
) -> None:
    """Closed-form projection (ridge regression of teacher embeddings on the frozen student's features), fitted
    on the training `rows` only, so held-out texts stay unseen by the baseline as well as by training."""
    if student.projection is None:
        raise ConfigError("projection.init=ridge needs a projection: set model.projection_dim")
    features = encode_cached(student, texts, kind="features", cache=cache, batch_size=batch_size)
    fit_rows = np.asarray(rows, dtype=np.int64)
    weight, bias = fit_ridge(np.asarray(features)[fit_rows], np.asarray(table.embeddings)[fit_rows], ridge)
    set_linear(student.projection, weight, bias)
    log.info("projection fitted in closed form on %d texts (ridge %.0e)", len(fit_rows), ridge)


def make_logger(cfg: DictConfig, out_dir: Path):
    if cfg.logger.kind == "csv":
        return pl.loggers.CSVLogger(out_dir, name="logs")
    if cfg.logger.kind == "wandb":
        return pl.loggers.WandbLogger(
            project=cfg.logger.project,
            save_dir=str(out_dir),
            mode=cfg.logger.mode,
            group=cfg.logger.group,
            tags=list(cfg.logger.tags),
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    raise ConfigError(f"logger.kind must be wandb or csv, got {cfg.logger.kind!r}")


def heldout_cosine(student: Encoder, texts: list[str], targets: np.ndarray, batch_size: int) -> float:
    """Mean cosine between the student's and the teacher's vectors of texts the student never trained on."""
    s = np.asarray(student.encode(texts, batch_size=batch_size), dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    cos = (s * t).sum(1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(t, axis=1))
    return float(cos.mean())


def run(cfg: DictConfig, out_dir: Path) -> dict:
    started = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    loss = build_loss(OmegaConf.to_container(cfg.loss, resolve=True))  # config errors surface before any work
    optim = OptimConfig(**OmegaConf.to_container(cfg.optim, resolve=True))
    optim.check()
    settings = EvalSettings(limit=cfg.eval.limit, max_docs=cfg.eval.max_docs, batch_size=cfg.eval.batch_size)
    for name in cfg.eval.tasks:  # a misspelt task fails now, not after data reading and teacher work
        get_task(name)
    if cfg.projection.init not in ("random", "ridge"):
        raise ConfigError(f"projection.init must be random or ridge, got {cfg.projection.init!r}")
    teacher_table_configured = cfg.teacher.get("file") or (cfg.teacher.get("path") and cfg.teacher.get("cache", True))
    if cfg.projection.init == "ridge" and not teacher_table_configured:
        raise ConfigError("projection.init=ridge needs cached teacher embeddings (teacher=... with cache=true)")
    mining = check_mining(cfg)
    cache = EmbeddingCache() if cfg.eval.cache else None

    student = build_encoder(cfg.model)
    # What depends on the student's size is checked before any data is read or any teacher embedding computed.
    loss.check_dim(student.dim)
    check_settings(settings, student.dim)
    if cfg.projection.init == "ridge" and student.projection is None:
        raise ConfigError("projection.init=ridge needs a projection: set model.projection_dim")
    remine = mine_before_training(cfg, mining, student, out_dir, cache) if mining else None
    examples = read_examples(cfg.data, cfg.data.root)
    dm = EmbeddingDataModule(
        examples,
        Collator.for_encoder(student, cfg.data.max_length),
        batch_size=cfg.data.batch_size,
        seed=cfg.seed,
        group_by_length=cfg.data.group_by_length,
        drop_last=cfg.data.drop_last,
        heldout=cfg.data.heldout,
    )
    groups = [[example_text(e) for e in source] for source in examples.values()]  # dm.all_examples order
    texts = [t for g in groups for t in g]
    ids = [e.id if isinstance(e, TextExample) else e.query_id for e in dm.all_examples]
    teacher, table = build_teacher(cfg, groups, ids, cache, student.dim)
    module = EmbeddingModule(student, loss, optim, teacher=teacher if table is None else None, teacher_table=table)
    if cfg.projection.init == "ridge":
        assert table is not None  # checked above, before any work
        init_projection(student, texts, dm.train_rows, table, cfg.projection.ridge, cache, cfg.eval.batch_size)
    if cfg.projection.freeze_backbone:
        student.backbone.requires_grad_(False)

    tasks = list(cfg.eval.tasks)
    retrieval_tasks = [t for t in tasks if get_task(t).kind == "retrieval"]
    asymmetric = bool(cfg.eval.asymmetric and teacher is not None and retrieval_tasks)
    common = {"every_n_steps": cfg.eval.every_n_steps, "settings": settings, "data_root": cfg.data.root, "cache": cache}
    # The run directory itself holds the trained student's evaluation (the embedlab-eval schema); every other
    # system gets a subfolder of the same shape, per-query scores included, for paired comparisons.
    evaluators = [EvaluationCallback(tasks, out_dir=out_dir, **common)]
    if asymmetric:
        evaluators.append(
            EvaluationCallback(
                retrieval_tasks,
                document_encoder=teacher,
                prefix="eval_asymmetric",
                out_dir=out_dir / "asymmetric",
                **common,
            )
        )

    def evaluate(task_names: list[str], folder: str, docs: Encoder, queries: Encoder | None = None) -> dict:
        results = evaluate_tasks(
            task_names, docs, queries, settings=settings, data_root=cfg.data.root, cache=cache, out_dir=out_dir / folder
        )
        return {r.task: r.metrics for r in results}

    systems: dict[str, dict] = {}  # system -> task -> metrics: the run's one results table
    if teacher is not None and cfg.eval.teacher:
        systems["teacher"] = evaluate(tasks, "teacher", teacher)
    heldout = np.asarray(dm.heldout_rows, dtype=np.int64)

    def agreement() -> float | None:
        if table is None or not len(heldout):
            return None
        return heldout_cosine(student, [texts[i] for i in heldout], table.embeddings[heldout], cfg.eval.batch_size)

    summary: dict = {"heldout_cosine_before": agreement()}
    if cfg.eval.before_training:
        systems["student (before)"] = evaluate(tasks, "before", student)
        if asymmetric:
            systems["asymmetric (before)"] = evaluate(retrieval_tasks, "asymmetric_before", teacher, student)

    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=make_logger(cfg, out_dir),
        callbacks=[
            *evaluators,
            *([remine] if remine else []),
            pl.callbacks.LearningRateMonitor("step"),
            # tqdm, not rich's bar: rich draws nothing when output goes to a file or a CI log
            pl.callbacks.TQDMProgressBar(refresh_rate=1 if sys.stderr.isatty() else 20),
        ],
        enable_checkpointing=False,
        default_root_dir=str(out_dir),
        deterministic=True,
    )
    trainer.fit(module, datamodule=dm)

    systems["student"] = {r.task: r.metrics for r in evaluators[0].last}
    if asymmetric:
        systems["asymmetric"] = {r.task: r.metrics for r in evaluators[1].last}
    write_json_atomic(out_dir / "results.json", systems)
    summary.update(
        heldout_cosine=agreement(), steps=trainer.global_step, train_seconds=round(time.perf_counter() - started, 1)
    )
    if cfg.export:
        student.save(out_dir / "model")  # LoRA: merged into a plain folder
        if student.describe()["lora"]:
            student.save_adapter(out_dir / "adapter")  # and the adapter alone, loadable on its base
    write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_json_atomic(
        out_dir / "manifest.json",
        build_manifest(
            seed=cfg.seed,
            data={"train_texts": fingerprint(texts)},
            models={"student": student.fingerprint(), **({"teacher": teacher.fingerprint()} if teacher else {})},
            extra={"summary": summary, "teacher_source": table.source if table is not None else None},
        ),
    )
    print(results_table(systems, summary))
    print(f"\nrun directory: {out_dir}")
    return {"systems": systems, "summary": summary}


def results_table(systems: dict[str, dict], summary: dict) -> str:
    """One row per system (teacher, student before/after, asymmetric), each task's main metric and its share of
    the teacher's score."""
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


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(run, cfg, log)


if __name__ == "__main__":
    main()
