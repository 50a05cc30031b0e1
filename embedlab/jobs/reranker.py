"""The reranker job (`embedlab-train-reranker`): a cross-encoder distilled from scored lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from embedlab.config.build import encoder_config
from embedlab.data.training import read_scored
from embedlab.errors import ConfigError
from embedlab.eval.sts import spearman
from embedlab.hub import resolve_model
from embedlab.io import atomic_path, sha256_file, write_json_atomic
from embedlab.lit.optim import OptimConfig
from embedlab.lit.reranker import PairCollator, RerankerModule
from embedlab.manifest import build_manifest, write_run_record
from embedlab.precision import resolve_trainer
from embedlab.scoring.scorers import CrossEncoderScorer


def agreement(scorer: CrossEncoderScorer, lists) -> dict[str, float]:
    """How the reranker orders held-out lists compared with the teacher."""
    scores = scorer.score([e.query for e in lists], [list(e.candidates) for e in lists])
    teacher = np.array([e.scores for e in lists])
    return {
        "top1_agreement": float((scores.argmax(1) == teacher.argmax(1)).mean()),
        "spearman": float(np.nanmean([spearman(s, t) for s, t in zip(scores, teacher, strict=True)])),
    }


def run(cfg: DictConfig, out_dir: Path) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    optim = OptimConfig(**OmegaConf.to_container(cfg.optim, resolve=True))
    lists = read_scored(cfg.input, cfg.num_candidates)
    if not 0 <= cfg.heldout < len(lists):
        raise ConfigError(f"heldout={cfg.heldout} must leave training lists (there are {len(lists)})")
    pl.seed_everything(cfg.seed, workers=True)
    order = np.random.default_rng(cfg.seed).permutation(len(lists))
    heldout = [lists[i] for i in order[: cfg.heldout]]
    train = [lists[i] for i in sorted(order[cfg.heldout :])]
    base = resolve_model(encoder_config(cfg.base).path)
    tokenizer = AutoTokenizer.from_pretrained(str(base), trust_remote_code=cfg.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=1, trust_remote_code=cfg.trust_remote_code
    )
    scorer = CrossEncoderScorer(base, model=model, tokenizer=tokenizer, max_length=cfg.max_length)
    before = agreement(scorer, heldout) if heldout else {}
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=PairCollator(tokenizer, cfg.max_length),
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    module = RerankerModule(
        model, optim, student_temperature=cfg.student_temperature, teacher_temperature=cfg.teacher_temperature
    )
    trainer_settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_settings["precision"] = resolve_trainer(
        trainer_settings["precision"], trainer_settings.get("accelerator", "auto")
    )
    trainer = pl.Trainer(
        **trainer_settings,
        logger=pl.loggers.CSVLogger(out_dir, name="logs"),
        callbacks=[pl.callbacks.TQDMProgressBar(refresh_rate=10)],
        enable_checkpointing=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(module, train_dataloaders=loader)
    after = agreement(scorer, heldout) if heldout else {}
    with atomic_path(out_dir / "reranker") as tmp:  # never a half-saved model folder
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    metrics = {"heldout_lists": len(heldout), "before": before, "after": after, "steps": trainer.global_step}
    write_json_atomic(out_dir / "metrics.json", metrics)
    manifest = build_manifest(
        seed=cfg.seed, data={"input": sha256_file(cfg.input)}, models={"reranker": scorer.fingerprint()}
    )
    write_run_record(out_dir, cfg, manifest)
    print(f"held-out agreement with the teacher: before {before}, after {after}")
    print(f"\nreranker: {out_dir / 'reranker'}\nrun directory: {out_dir}")
    return metrics
