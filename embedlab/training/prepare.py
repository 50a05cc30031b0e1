"""Everything a training run needs before its first step: the student, the training examples in a data module,
mined negatives, the teacher and its table of targets, the closed-form projection, the Lightning module.

Expensive work comes last and only once the cheap checks have passed: the student is built before any data is
read, and its size and the evaluation settings are checked before the teacher embeds anything. The frozen passes
(the cached teacher table, the closed-form projection: `frozen_targets`) wait for fit, where the ranks of a process
group share them (`embedlab.training.frozen`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from embedlab.config.build import build_encoder, preset_with
from embedlab.config.check import TrainChecks
from embedlab.data.arrow import open_source
from embedlab.data.collate import Collator
from embedlab.data.rows import RowSpec
from embedlab.data.training import TextExample, example_text, read_pairs, read_scored, read_texts
from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.runner import check_settings
from embedlab.eval.shards import RowStack
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.mixture import BatchCounter, MixtureDataModule, MixturePart
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.remining import RemineCallback
from embedlab.lit.teacher import TeacherTable, check_teacher_size, teacher_targets
from embedlab.models import Encoder
from embedlab.models.projection import fit_projection, fit_projection_blocks
from embedlab.training.negatives import check_mining, mine_before_training

log = logging.getLogger("embedlab.train")
FIT_BLOCK_ROWS = 16_384  # rows of features and targets in RAM at once while a mixture's projection is fitted


@dataclass
class Prepared:
    """A run ready to fit: what `train` evaluates, fits and records."""

    student: Encoder
    module: EmbeddingModule
    data: EmbeddingDataModule
    texts: list[str]  # every training example's text, in the data module's order (teacher table rows)
    ids: list[str]  # their ids, same order
    teacher: Encoder | None
    table: TeacherTable | None
    remine: RemineCallback | None  # re-mining during training (mining.refresh_every_n_steps)
    sizes: dict[str, int]  # training examples per source (the model card's training data)
    data_fingerprint: str | None = None  # a mixture's (its Arrow files' keys); else the manifest hashes `texts`
    counter: BatchCounter | None = None  # a mixture's batches per dataset
    groups: list[list[str]] = field(default_factory=list)  # `texts` per training source (a cached table's parts)


def read_examples(data: DictConfig, root: str | None) -> dict[str, list]:
    """Training examples by source name (one source per batch when there are several); each kind's keys are its
    schema's (config/schema.py), data.kind one of them (config/check.py)."""
    if data.kind == "text":
        return {src.name: read_texts(src, root) for src in data.sources if src.limit != 0}  # limit 0: left out
    if data.kind == "pairs":
        return {data.path: read_pairs(data.path, data.split, data.negatives_file, data.num_negatives, root)}
    return {Path(data.path).stem: read_scored(data.path, data.num_candidates)}


def mixture_data(data: DictConfig, student: Encoder, seed: int) -> MixtureDataModule:
    """`data.mixture`'s datasets as Arrow sources (built once per content fingerprint), each with its collator."""
    parts = []
    weights = [e.weight for e in data.mixture]
    if any(w is None for w in weights) and any(w is not None for w in weights):
        raise ConfigError("data.mixture: give every entry a weight, or none (size-proportional, data.temperature)")
    for e in data.mixture:
        spec = RowSpec(e.name, e.kind, e.format, e.num_negatives, e.min_score, e.split)
        source = open_source(spec, e.path, root=data.root, subset=e.subset, on_bad_row=data.on_bad_row)
        collator = Collator(
            student.tokenizer,
            e.max_length or data.max_length,
            student.query_prompt if e.instruction is None else e.instruction,
            student.document_prompt if e.document_instruction is None else e.document_instruction,
            prompt_lengths=not getattr(student, "include_prompt", True),
            text_prompt=e.instruction or "",
            document_max_length=e.document_max_length,
        )
        weight = e.weight
        if weight is None and data.temperature != 1.0:  # temperature 1 leaves it to the sampler: one pass each
            weight = len(source) ** (1.0 / data.temperature)
        parts.append(MixturePart(e.name, source, collator, weight))
    for p in parts:
        log.info("mixture: %s, %s, %d rows", p.name, p.source.spec.kind, len(p.source))
    return MixtureDataModule(
        parts, batch_size=data.batch_size, seed=seed, group_by_length=data.group_by_length, drop_last=data.drop_last
    )


def build_module(
    cfg: DictConfig, checks: TrainChecks, student: Encoder, teacher: Encoder | None, table: TeacherTable | None = None
) -> EmbeddingModule:
    """The Lightning module with the run's step strategies (`step.*`) and non-finite policy: one place for both paths.
    With a cached teacher table the teacher model stays out of the module (its targets are looked up)."""
    return EmbeddingModule(
        student,
        checks.loss,
        checks.optim,
        teacher=teacher if table is None else None,
        teacher_table=table,
        chunk_size=cfg.step.chunk_size,
        chunk_tokens=cfg.step.chunk_tokens,
        gather=cfg.step.gather,
        nonfinite=cfg.nonfinite,
        compile=cfg.step.compile,
    )


def prepare_mixture(cfg: DictConfig, checks: TrainChecks, student: Encoder, cache: EmbeddingCache | None) -> Prepared:
    """A mixture run: a teacher table for its texts datasets (or an online teacher), no held-out slice."""
    data = mixture_data(cfg.data, student, cfg.seed)
    teacher, table = mixture_teacher(cfg, data, student, cache)
    checks.loss.partial = True  # each term on the batches that hold its inputs
    module = build_module(cfg, checks, student, teacher, table)
    if cfg.projection.freeze_backbone:
        student.backbone.requires_grad_(False)
    counter = BatchCounter(data.source_names)
    return Prepared(student, module, data, [], [], teacher, table, None, data.sizes, data.fingerprint, counter)


def mixture_teacher(
    cfg: DictConfig, data: MixtureDataModule, student: Encoder, cache: EmbeddingCache | None
) -> tuple[Encoder | None, TeacherTable | None]:
    """A mixture's teacher and, with teacher.cache=true or teacher.file, its table (`TeacherTable.spanning`) for the
    texts datasets, looked up by the batches' rows: each dataset embedded once from its Arrow column into the
    sharded cache, or its ids' vectors from the file. With projection.init=ridge the projection is then fitted on
    those texts."""
    t = cfg.teacher
    teacher = None if t.file else load_teacher(cfg, student.dim)
    if not t.file and (teacher is None or not t.cache):
        return teacher, None
    texts_parts = {d: p.source for d, p in enumerate(data.parts) if p.source.spec.kind == "texts"}
    if not texts_parts:  # no distillation batches: nothing to look up
        return teacher, None
    texts = {d: source.texts() for d, source in texts_parts.items()}
    if t.file:  # one pass over the file for every texts dataset's ids ("<entry name>:<id>", as the Arrow rows hold)
        ids = [i for source in texts_parts.values() for i in source.ids()]
        vectors = TeacherTable.from_file(t.file, ids).embeddings
        bounds = np.cumsum([0, *map(len, texts.values())])
        targets = {d: vectors[a:b] for d, a, b in zip(texts, bounds[:-1], bounds[1:], strict=True)}
        name = f"file {t.file}"
    else:
        log.info("teacher %s: embedding %d mixture texts (cached)", teacher.name, sum(map(len, texts.values())))
        targets = {d: teacher_targets(teacher, column, t.batch_size, cache) for d, column in texts.items()}
        name = f"teacher {teacher.name}"
    sizes = [len(p.source) for p in data.parts]
    table = TeacherTable.spanning([targets.get(d) for d in range(len(sizes))], sizes, name)
    if cfg.projection.init == "ridge":
        ridge, batch_size = cfg.projection.ridge, cfg.eval.batch_size
        init_mixture_projection(student, list(texts.values()), list(targets.values()), ridge, cache, batch_size)
    return teacher, table


def init_mixture_projection(
    student: Encoder,
    texts: list[Sequence[str]],
    targets: list[np.ndarray | RowStack],
    ridge: float,
    cache: EmbeddingCache | None,
    batch_size: int,
) -> None:
    """`init_projection` for a mixture: fitted on every row of its texts datasets, their features (cached per
    dataset) and teacher targets read a block at a time from the memory-mapped entries (`fit_projection_blocks`)."""
    features = [encode_cached(student, t, kind="features", cache=cache, batch_size=batch_size) for t in texts]

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for x, y in zip(features, targets, strict=True):
            for a in range(0, len(x), FIT_BLOCK_ROWS):
                yield x[a : a + FIT_BLOCK_ROWS], y[a : a + FIT_BLOCK_ROWS]

    fit_projection_blocks(student.projection, blocks, ridge)
    log.info("projection fitted in closed form on %d mixture texts (ridge %.0e)", sum(map(len, texts)), ridge)


def load_teacher(cfg: DictConfig, student_dim: int) -> Encoder | None:
    """The teacher model (`teacher.path`), its size checked against the student's before it embeds anything."""
    t = cfg.teacher
    if not t.path:
        return None
    teacher = preset_with(t.path, max_length=t.max_length, precision=t.precision, backend=t.backend)
    check_teacher_size(student_dim, teacher.dim, f"the teacher ({teacher.name})")
    return teacher


def build_teacher(cfg: DictConfig, ids: list[str], student_dim: int) -> tuple[Encoder | None, TeacherTable | None]:
    """(teacher encoder or None, teacher file's table or None) from the `teacher` group; a cached teacher's table
    is `frozen_targets`' work. A student/teacher size mismatch is reported as soon as the teacher is loaded."""
    t = cfg.teacher
    if t.file:
        return None, TeacherTable.from_file(t.file, ids)
    return load_teacher(cfg, student_dim), None


def frozen_targets(cfg: DictConfig, run: Prepared, cache: EmbeddingCache | None) -> None:
    """The expensive frozen passes before training (a mixture builds its own in `prepare_mixture`): the cached teacher
    table (`teacher.cache`: the teacher embeds `run.groups`, then the module looks its targets up) and the
    closed-form projection (`projection.init=ridge`, on `run.data.train_rows`)."""
    if isinstance(run.data, MixtureDataModule):  # built in `prepare_mixture` (each rank repeats it: not yet shared)
        return
    if run.teacher is not None and cfg.teacher.cache:
        log.info("teacher %s: embedding %d training texts (cached)", run.teacher.name, len(run.texts))
        run.table = TeacherTable.from_encoder(run.teacher, run.groups, cache, batch_size=cfg.teacher.batch_size)
        run.module.use_teacher_table(run.table)
    if cfg.projection.init == "ridge":
        assert run.table is not None  # config/check.py: ridge needs cached teacher embeddings
        rows = run.data.train_rows
        init_projection(run.student, run.texts, rows, run.table, cfg.projection.ridge, cache, cfg.eval.batch_size)


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
    features = encode_cached(student, texts, kind="features", cache=cache, batch_size=batch_size)
    fit_rows = np.asarray(rows, dtype=np.int64)
    fit_projection(student.projection, features[fit_rows], table.embeddings[fit_rows], ridge)
    log.info("projection fitted in closed form on %d texts (ridge %.0e)", len(fit_rows), ridge)


def shipped_model(model: DictConfig) -> Encoder:
    """The configured student without the new projection head: the model as released."""
    return build_encoder(OmegaConf.merge(model, {"projection_dim": None}))


def prepare(cfg: DictConfig, checks: TrainChecks, out_dir: Path, cache: EmbeddingCache | None) -> Prepared:
    mining = check_mining(cfg)
    student = build_encoder(cfg.model)
    # What depends on the student's size is checked before any data is read or any teacher embedding computed.
    checks.loss.check_dim(student.dim)
    check_settings(checks.eval, student.dim)
    if cfg.projection.init == "ridge" and student.projection is None:
        raise ConfigError("projection.init=ridge needs a projection: set model.projection_dim")
    if cfg.data.kind == "mixture":
        return prepare_mixture(cfg, checks, student, cache)
    remine = mine_before_training(cfg, mining, student, out_dir, cache) if mining else None
    examples = read_examples(cfg.data, cfg.data.root)
    data = EmbeddingDataModule(
        examples,
        Collator.for_encoder(student, cfg.data.max_length),
        batch_size=cfg.data.batch_size,
        seed=cfg.seed,
        group_by_length=cfg.data.group_by_length,
        drop_last=cfg.data.drop_last,
        heldout=cfg.data.heldout,
    )
    groups = [[example_text(e) for e in source] for source in examples.values()]  # data.all_examples order
    texts = [t for g in groups for t in g]
    ids = [e.id if isinstance(e, TextExample) else e.query_id for e in data.all_examples]
    teacher, table = build_teacher(cfg, ids, student.dim)
    module = build_module(cfg, checks, student, teacher, table)
    if cfg.projection.freeze_backbone:
        student.backbone.requires_grad_(False)
    sizes = {name: len(source) for name, source in examples.items()}
    return Prepared(student, module, data, texts, ids, teacher, table, remine, sizes, groups=groups)
