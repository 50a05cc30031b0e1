"""`embedlab-train`: train a student encoder from Hydra config, evaluate it, export it, record the run.

embedlab-train                                         # MiniLM + InfoNCE on SciFact train, eval on SciFact test
embedlab-train loss=focal_infonce loss.focal_infonce.gamma=2
embedlab-train experiment=leaf_demo                    # LEAF: mpnet teacher -> MiniLM + projection 384->768
embedlab-train ... resume=outputs/train/<run>          # continue a killed run from its last checkpoint
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from embedlab.cli.common import CONF_DIR, build_encoder, encoder_config, run_hydra_job
from embedlab.cli.sweep_labels import SweepLabels, current_labels
from embedlab.cli.train_negatives import check_mining, mine_before_training
from embedlab.cli.train_resume import config_record, find_checkpoint, run_dir
from embedlab.config_check import check_train_config, train_eval_settings
from embedlab.data import get_task
from embedlab.data.collate import Collator
from embedlab.data.training import TextExample, example_text, read_pairs, read_scored, read_texts
from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.runner import check_settings, evaluate_tasks
from embedlab.io import fingerprint, write_json_atomic, write_jsonl_atomic, write_text_atomic
from embedlab.lit.callbacks import EvaluationCallback
from embedlab.lit.checkpoint import AtomicCheckpointIO, ResumeCheckpoint
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.distributed import build_strategy
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.lit.teacher import TeacherTable
from embedlab.losses import build_loss
from embedlab.manifest import build_manifest
from embedlab.models import Encoder
from embedlab.models.projection import fit_ridge, set_linear
from embedlab.precision import record as precision_record
from embedlab.precision import resolve_trainer, trainer_device
from embedlab.report.table import format_table

log = logging.getLogger("embedlab.train")
OmegaConf.register_new_resolver("embedlab_run_dir", run_dir, replace=True)  # conf/train.yaml: hydra.run.dir


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
    settings = {k: t.get(k) for k in ("max_length", "precision", "backend")}
    node = OmegaConf.merge(
        OmegaConf.structured(encoder_config(t.path).__dict__), {k: v for k, v in settings.items() if v is not None}
    )
    teacher = build_encoder(node, frozen=True)
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


def shipped_model(model: DictConfig) -> Encoder:
    """The configured student without the new projection head: the model as released. Not frozen, so it runs on
    torch like the student before training and shares that backbone pass through the embedding cache."""
    return build_encoder(OmegaConf.merge(model, {"projection_dim": None}))


def make_logger(cfg: DictConfig, out_dir: Path, labels: SweepLabels | None = None):
    """`labels`: the Hydra multirun's group and varied knobs (default: those of the running job)."""
    if cfg.logger.kind == "csv":
        return pl.loggers.CSVLogger(out_dir, name="logs")
    if cfg.logger.kind == "wandb":
        labels = labels or current_labels()
        return pl.loggers.WandbLogger(
            project=cfg.logger.project,
            save_dir=str(out_dir),
            mode=cfg.logger.mode,
            group=cfg.logger.group or labels.group,
            tags=list(dict.fromkeys([*cfg.logger.tags, *labels.tags])),
            config={**OmegaConf.to_container(cfg, resolve=True), "sweep": labels.knobs},
        )
    raise ConfigError(f"logger.kind must be wandb or csv, got {cfg.logger.kind!r}")


def heldout_cosines(student: Encoder, texts: list[str], targets: np.ndarray, batch_size: int) -> np.ndarray:
    """Per text, the cosine between the student's and the teacher's vectors of texts the student never trained on."""
    s = np.asarray(student.encode(texts, batch_size=batch_size), dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    return (s * t).sum(1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(t, axis=1))


def run(cfg: DictConfig, out_dir: Path) -> dict:
    started = time.perf_counter()
    record = config_record(cfg)  # before mining rewrites cfg.data: what a resumed run must match
    if cfg.resume and (out_dir / "manifest.json").exists():  # e.g. a relaunched sweep: its finished jobs are skipped
        log.warning("resume: %s holds a finished run (manifest.json); nothing to do", out_dir)
        return {}
    check_train_config(cfg)  # names, values, sizes and secrets: before any data, model or teacher work
    pl.seed_everything(cfg.seed, workers=True)
    loss = build_loss(OmegaConf.to_container(cfg.loss, resolve=True))  # config errors surface before any work
    optim = OptimConfig(**OmegaConf.to_container(cfg.optim, resolve=True))
    optim.check()
    settings = train_eval_settings(cfg)
    teacher_table_configured = cfg.teacher.get("file") or (cfg.teacher.get("path") and cfg.teacher.get("cache", True))
    if cfg.projection.init == "ridge" and not teacher_table_configured:
        raise ConfigError("projection.init=ridge needs cached teacher embeddings (teacher=... with cache=true)")
    mining = check_mining(cfg)
    cache = EmbeddingCache() if cfg.eval.cache else None
    ckpt_path = find_checkpoint(cfg.resume, out_dir, record)

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
    module = EmbeddingModule(
        student,
        loss,
        optim,
        teacher=teacher if table is None else None,
        teacher_table=table,
        chunk_size=cfg.step.chunk_size,
        gather=cfg.step.gather,
        nonfinite=cfg.nonfinite,
    )
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
    # Under DDP every process runs this script; one evaluates and writes (Lightning's launcher sets the rank).
    main_process = pl.utilities.rank_zero_only.rank == 0
    if main_process and teacher is not None and cfg.eval.teacher:
        systems["teacher"] = evaluate(tasks, "teacher", teacher)
    heldout = np.asarray(dm.heldout_rows, dtype=np.int64)

    def agreement() -> np.ndarray | None:
        if table is None or not len(heldout):
            return None
        return heldout_cosines(student, [texts[i] for i in heldout], table.embeddings[heldout], cfg.eval.batch_size)

    cosines_before = agreement()
    summary: dict = {"heldout_cosine_before": _mean(cosines_before)}
    if main_process and cfg.eval.before_training:
        if cfg.model.get("projection_dim") and not cfg.model.get("lora"):
            # The backbone as released, in its own space (no new head): what LEAF into the teacher's space cost or
            # gained. Same backbone as the student before training, so the corpus pass is shared via the cache.
            systems["student (as shipped)"] = evaluate(tasks, "shipped", shipped_model(cfg.model))
        systems["student (before)"] = evaluate(tasks, "before", student)
        if asymmetric:
            systems["asymmetric (before)"] = evaluate(retrieval_tasks, "asymmetric_before", teacher, student)

    trainer_settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_settings["precision"] = resolve_trainer(trainer_settings["precision"], trainer_settings["accelerator"])
    strategy = build_strategy(
        trainer_settings.pop("strategy", "auto"),
        trainer_settings.pop("fsdp", None),
        student,
        grad_cache=bool(cfg.step.chunk_size),
    )
    checkpoints = out_dir / "checkpoints"
    trainer = pl.Trainer(
        **trainer_settings,
        strategy=strategy,
        use_distributed_sampler=False,  # the data module shards its length-grouped global batches itself
        logger=make_logger(cfg, out_dir),
        callbacks=[
            *evaluators,
            *([remine] if remine else []),
            pl.callbacks.LearningRateMonitor("step"),
            # tqdm, not rich's bar: rich draws nothing when output goes to a file or a CI log
            pl.callbacks.TQDMProgressBar(refresh_rate=1 if sys.stderr.isatty() else 20),
            ResumeCheckpoint(checkpoints, cfg.checkpoint.every_n_steps, cfg.checkpoint.keep, record),
        ],
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(out_dir),
        deterministic=True,
    )
    fit_started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:  # raised after the step's checkpoint was saved: the run is unfinished, not failed
        log.warning("stopped by SIGTERM at step %d; continue with resume=%s", trainer.global_step, out_dir)
        sys.exit(143)  # 128 + SIGTERM, as if the signal had ended the process
    fit_seconds = round(time.perf_counter() - fit_started, 1)  # training alone (in-training evaluations included)
    if isinstance(trainer.logger, pl.loggers.WandbLogger):
        trainer.logger.experiment.finish()  # else the next job of a multirun logs into this run (Lightning reuses it)
    if not trainer.is_global_zero:
        return {}

    systems["student"] = {r.task: r.metrics for r in evaluators[0].last}
    if asymmetric:
        systems["asymmetric"] = {r.task: r.metrics for r in evaluators[1].last}
    write_json_atomic(out_dir / "results.json", systems)
    cosines = agreement()
    if cosines is not None and cosines_before is not None:  # the alignment's distribution, for analysis notebooks
        rows = zip(heldout, cosines_before, cosines, strict=True)
        write_jsonl_atomic(
            out_dir / "heldout_cosine.jsonl", ({"id": ids[i], "before": b, "after": a} for i, b, a in rows)
        )
    summary.update(
        heldout_cosine=_mean(cosines),
        steps=trainer.global_step,
        train_seconds=fit_seconds,
        run_seconds=round(time.perf_counter() - started, 1),  # the whole run: data, teacher, evaluations, export
    )
    summary["nonfinite_skipped"] = module.nonfinite.skipped  # steps dropped under nonfinite=skip
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
            extra={
                "summary": summary,
                "teacher_source": table.source if table is not None else None,
                "precision": precision_record(
                    {
                        "model": student.resolved_precision(),
                        "teacher": teacher.resolved_precision() if teacher else None,
                        "trainer": trainer_settings["precision"],
                    },
                    trainer_device(str(trainer_settings["accelerator"])),
                ),
            },
        ),
    )
    if not cfg.checkpoint.keep_after_training:
        shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: `model/` is its artefact
    print(results_table(systems, summary))
    print(f"\nrun directory: {out_dir}")
    return {"systems": systems, "summary": summary}


def _mean(values: np.ndarray | None) -> float | None:
    return None if values is None else float(values.mean())


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
