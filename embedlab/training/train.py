"""A training run as a library call: `train(cfg, out_dir)` takes a resolved `conf/train.yaml` config and runs
prepare → fit (which first runs the frozen passes: teacher table, projection, the frozen systems' evaluations, on
every rank of a process group) → evaluate the trained student → export → record.

    from embedlab.config.build import compose
    from embedlab.training import train
    train(compose("train", ["experiment=leaf_demo", "trainer.max_steps=10"]), Path("outputs/mine"))

`embedlab-train` (embedlab/cli/train.py) only composes the config from its command line and calls it.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from embedlab.config.check import check_train_config
from embedlab.eval.cache import EmbeddingCache
from embedlab.io import fingerprint, write_json_atomic, write_jsonl_atomic
from embedlab.lit.checkpoint import AtomicCheckpointIO, ResumeCheckpoint
from embedlab.lit.distributed import build_strategy, evaluates_on_this_rank
from embedlab.manifest import build_manifest, git_state, write_run_record
from embedlab.models.card import model_card
from embedlab.precision import record as precision_record
from embedlab.precision import resolve_trainer, trainer_device
from embedlab.training.frozen import FrozenPasses
from embedlab.training.loggers import make_logger
from embedlab.training.prepare import Prepared, prepare
from embedlab.training.resume import config_record, find_checkpoint
from embedlab.training.systems import Systems, heldout_cosines, results_table

log = logging.getLogger("embedlab.train")
SCRATCH = "embeddings.tmp"  # in the run directory: encodings the ranks share and no cache keeps, removed at the end


def train(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the training job of `cfg` in `out_dir`; returns {"systems": results table, "summary": ...} ({} on ranks
    other than 0 and for a finished run being resumed)."""
    started = time.perf_counter()
    git_state()  # the code this run starts with (manifest.json records it at the end)
    record = config_record(cfg)  # before mining rewrites cfg.data: what a resumed run must match
    if cfg.resume and (out_dir / "manifest.json").exists():  # e.g. a relaunched sweep: its finished jobs are skipped
        log.warning("resume: %s holds a finished run (manifest.json); nothing to do", out_dir)
        return {}
    checks = check_train_config(cfg)  # names, values, sizes and secrets: before any data, model or teacher work
    pl.seed_everything(cfg.seed, workers=True)
    cache = EmbeddingCache(shard_rows=cfg.eval.shard_rows) if cfg.eval.cache else None
    ckpt_path = find_checkpoint(cfg.resume, out_dir, record)
    run = prepare(cfg, checks, out_dir, cache)

    scratch = out_dir / SCRATCH
    systems = Systems(cfg, checks.eval, out_dir, cache, scratch)
    frozen = FrozenPasses(cfg, run, systems, cache, scratch)  # at fit's start, once the process group exists

    trainer_settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_settings["precision"] = resolve_trainer(trainer_settings["precision"], trainer_settings["accelerator"])
    strategy = build_strategy(
        trainer_settings.pop("strategy", "auto"),
        trainer_settings.pop("fsdp", None),
        run.student,
        grad_cache=bool(cfg.step.chunk_size or cfg.step.chunk_tokens),
    )
    evaluators = systems.callbacks(run)
    checkpoints = out_dir / "checkpoints"
    trainer = pl.Trainer(
        **trainer_settings,
        strategy=strategy,
        use_distributed_sampler=False,  # the data module shards its length-grouped global batches itself
        logger=make_logger(cfg, out_dir),
        callbacks=[
            frozen,
            *evaluators,
            *([run.remine] if run.remine else []),
            *([run.counter] if run.counter else []),
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
        trainer.fit(run.module, datamodule=run.data, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:  # raised after the step's checkpoint was saved: the run is unfinished, not failed
        log.warning("stopped by SIGTERM at step %d; continue with resume=%s", trainer.global_step, out_dir)
        sys.exit(143)  # 128 + SIGTERM, as if the signal had ended the process
    fit_seconds = round(time.perf_counter() - fit_started, 1)  # training alone (in-training evaluations included)
    if isinstance(trainer.logger, pl.loggers.WandbLogger):
        trainer.logger.experiment.finish()  # else the next job of a multirun logs into this run (Lightning reuses it)
    # The held-out cosines run the (now possibly sharded) student: under FSDP every rank runs them, rank 0 writes.
    on_this_rank = evaluates_on_this_rank(strategy, trainer.global_rank)
    cosines = heldout_cosines(run, cfg.eval.batch_size) if on_this_rank else None
    if not trainer.is_global_zero:
        return {}
    shutil.rmtree(scratch, ignore_errors=True)  # every rank has read its encodings
    cosines_before = frozen.cosines_before

    systems.after_training(evaluators)
    write_json_atomic(out_dir / "results.json", systems.table)
    if cosines is not None and cosines_before is not None:  # the alignment's distribution, for analysis notebooks
        rows = zip(run.data.heldout_rows, cosines_before, cosines, strict=True)
        write_jsonl_atomic(
            out_dir / "heldout_cosine.jsonl", ({"id": run.ids[i], "before": b, "after": a} for i, b, a in rows)
        )
    summary = {
        "heldout_cosine_before": _mean(cosines_before),
        "heldout_cosine": _mean(cosines),
        "steps": trainer.global_step,
        "train_seconds": fit_seconds,
        "run_seconds": round(time.perf_counter() - started, 1),  # the whole run: data, teacher, evaluations, export
        "nonfinite_skipped": run.module.nonfinite.skipped,  # steps dropped under nonfinite=skip
    }
    if run.counter is not None:  # a mixture: how closely the run followed its weights
        summary["batches_per_dataset"] = dict(run.counter.counts)
    if cfg.export:
        export(cfg, run, systems.table, summary, out_dir)
    write_run_record(out_dir, cfg, manifest(cfg, run, summary, trainer_settings))
    if not cfg.checkpoint.keep_after_training:
        shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: `model/` is its artefact
    print(results_table(systems.table, summary))
    print(f"\nrun directory: {out_dir}")
    return {"systems": systems.table, "summary": summary}


def export(cfg: DictConfig, run: Prepared, results: dict, summary: dict, out_dir: Path) -> None:
    """model/ (a sentence-transformers folder; LoRA merged) and, with LoRA, adapter/ — each with the run's card."""
    card = model_card(
        OmegaConf.to_container(cfg, resolve=True),
        results,
        model=run.student.describe(),
        summary=summary,
        data_sizes=run.sizes,
        teacher=run.teacher.name if run.teacher is not None else None,
    )
    run.student.save(out_dir / "model", card=card)
    if run.student.describe()["lora"]:
        run.student.save_adapter(out_dir / "adapter", card=card)  # the adapter alone, loadable on its base


def manifest(cfg: DictConfig, run: Prepared, summary: dict, trainer_settings: dict) -> dict:
    teacher = run.teacher
    resolved = {
        "model": run.student.resolved_precision(),
        "teacher": teacher.resolved_precision() if teacher else None,
        "trainer": trainer_settings["precision"],
    }
    return build_manifest(
        seed=cfg.seed,
        data={"train_texts": run.data_fingerprint or fingerprint(run.texts)},
        models={"student": run.student.fingerprint(), **({"teacher": teacher.fingerprint()} if teacher else {})},
        extra={
            "summary": summary,
            "teacher_source": run.table.source if run.table is not None else None,
            "precision": precision_record(resolved, trainer_device(str(trainer_settings["accelerator"]))),
        },
    )


def _mean(values: np.ndarray | None) -> float | None:
    return None if values is None else float(values.mean())
