"""The typed schemas of the Hydra configs, registered in Hydra's ConfigStore: each default is written once, here or
in the dataclass it builds (EncoderConfig, OptimConfig, EvalSettings, each loss's settings, TextSource), and a value
of the wrong type or an unknown key fails when the config is composed, naming its key. The YAML presets keep only what
differs (`defaults: [schema, _self_]`; data/<kind>_schema for data, loss/<name>_schema for losses).

What a schema cannot state (a string's allowed values, one knob against another) is `embedlab.config.check`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from embedlab.data.training import TextSource
from embedlab.eval.runner import EvalSettings
from embedlab.lit.optim import OptimConfig
from embedlab.losses import LOSSES
from embedlab.mining.select import SelectionConfig
from embedlab.models import EncoderConfig

# OmegaConf reads these annotations at runtime: X | None (Python 3.10+) and Any, but no Literal and no other unions.


@dataclass
class TeacherConfig:
    """A frozen teacher for LEAF targets: a model (conf/model name, folder or hub id) or an embeddings file."""

    path: str | None = None  # teacher model: conf/model name, folder or hub id (null = no teacher model)
    file: str | None = None  # black-box teacher embeddings keyed by text id (.npz ids+embeddings, or JSONL)
    max_length: int | None = None  # teacher tokens per text (null = its preset's)
    precision: str | None = None  # inference precision: auto | fp32 | bf16 (null = its preset's)
    backend: str | None = None  # frozen pass: auto | torch | onnx | onnx-int8 | openvino (null = its preset's)
    cache: bool = True  # compute the teacher's embeddings once, memory-mapped on disk; false = run it online
    batch_size: int = 32  # teacher encoding batch size


@dataclass
class TeacherFileConfig(TeacherConfig):
    """teacher=file: a required embeddings file (a "???" in YAML would not override the schema's null when merged)."""

    file: str = MISSING  # .npz with arrays ids + embeddings, or JSONL {"id", "embedding"}; ids are "<source>:<id>"


@dataclass
class FsdpConfig:
    """Lightning's FSDP strategy, built by embedlab.lit.distributed.build_strategy."""

    wrap_layers: list[str] = field(default_factory=list)  # transformer block classes, each one FSDP unit
    activation_checkpointing: bool = True  # recompute each wrapped layer in backward
    sharding_strategy: str = "FULL_SHARD"  # FULL_SHARD | SHARD_GRAD_OP | HYBRID_SHARD (shard within a node)
    state_dict_type: str = "sharded"  # sharded checkpoints (one file per rank) that save and resume; full = one file


@dataclass
class TrainerConfig:
    """Lightning Trainer settings (passed to pl.Trainer as they are, but `strategy` and `fsdp`)."""

    accelerator: str = "auto"  # cpu | gpu | auto
    devices: Any = 1  # devices per node, or auto; data.batch_size is per device
    num_nodes: int = 1  # machines (torchrun / SLURM set the ranks)
    strategy: str = "auto"  # auto | ddp | ddp_spawn | fsdp (Lightning's strategies)
    precision: str = "auto"  # auto (bf16-mixed where the device runs bf16 natively, else 32-true) | 32-true | ...
    max_epochs: int = 1  # passes over the training set
    max_steps: int = -1  # stop after this many optimizer steps (-1 = use max_epochs)
    gradient_clip_val: float | None = 1.0  # clip the gradient norm (null = no clipping)
    accumulate_grad_batches: int = 1  # gradient accumulation
    log_every_n_steps: int = 10  # logging interval
    fsdp: FsdpConfig | None = None  # with strategy=fsdp: how to shard (trainer=fsdp)


@dataclass
class StepConfig:
    """Step strategies, for every loss (embedlab/lit/gradcache.py, gather.py)."""

    chunk_size: int | None = None  # GradCache: embed in chunks of this many texts, backprop cached gradients
    chunk_tokens: int | None = None  # GradCache: also at most this many padded tokens per chunk, rows longest first
    gather: bool = True  # with several devices: all-gather embeddings so every query sees the global batch's documents
    compile: bool = False  # torch.compile the student's backbone (inductor); its speed: bench/compile_step.py


@dataclass
class ProjectionConfig:
    """The student's projection head (model.projection_dim)."""

    init: str = "random"  # random | ridge (closed-form fit of teacher embeddings on frozen student features)
    ridge: float = 1.0e-3  # ridge strength λ (scaled by the number of texts)
    freeze_backbone: bool = False  # train the projection only


@dataclass
class TrainEvalConfig(EvalSettings):
    """The train job's evaluation: EvalSettings (its defaults) and when and what to evaluate."""

    tasks: list[str] = field(default_factory=lambda: ["scifact"])  # dev tasks: scifact | arguana | stsb | sick
    every_n_steps: int = 0  # evaluate every N optimizer steps (0 = only at the end)
    before_training: bool = True  # also evaluate before the first step (the baseline row)
    asymmetric: bool = False  # with a teacher: also evaluate teacher documents × student queries
    teacher: bool = True  # with a teacher: evaluate it too (the reference row; cached after the first run)
    cache: bool = True  # reuse embeddings of frozen encoders (teacher, untouched student) across runs
    dims: list[int] | None = None  # Matryoshka grid, e.g. [128, 256]; null = full dimension only


@dataclass
class CheckpointConfig:
    """Resumable checkpoints in <run dir>/checkpoints (also written on SIGTERM)."""

    every_n_steps: int = 50  # save every N optimizer steps (0 = only on SIGTERM)
    keep: int = 2  # newest checkpoints kept; an unreadable newest one falls back to the one before
    keep_after_training: bool = False  # delete them once the run has written its results (the model is in model/)


@dataclass
class MiningConfig(SelectionConfig):
    """conf/mining/: the selection rules (SelectionConfig: rank window, margin, sampling) and when and how widely to
    retrieve the candidates they choose from."""

    enabled: bool = True  # mine before training (embedlab-train); embedlab-mine always mines
    top_k: int = 100  # candidates retrieved per query (max_rank ≤ top_k)
    refresh_every_n_steps: int = 0  # embedlab-train: re-mine with the current student every N steps (ANCE); 0 = never


@dataclass
class ScorerConfig:
    """One soft-label teacher of `teacher_scores.teachers` (embedlab/scoring/scorers.py, config/build.build_scorer)."""

    kind: str = MISSING  # bi_encoder | cross_encoder
    model: str = MISSING  # a conf/model name, folder or hub id (a reranker: its folder or hub id)
    max_length: int | None = None  # tokens per text (cross_encoder: per pair); null = the preset's (reranker: 512)
    precision: str = "auto"  # bi_encoder inference precision: auto (bf16 only where native) | fp32 | bf16
    backend: str = "auto"  # bi_encoder frozen pass: auto | torch | onnx | onnx-int8 | openvino
    weight: float = 1.0  # weight in the sum over teachers
    trust_remote_code: bool = False  # cross_encoder: run code shipped with the reranker, only for models you trust


@dataclass
class TeacherScoresConfig:
    """conf/teacher_scores/: soft labels for mined candidate lists (embedlab-score, or embedlab-train with mining)."""

    normalize: str = "zscore"  # per-query normalisation before the weighted sum: zscore | minmax | none
    teachers: list[ScorerConfig] = field(default_factory=list)  # the teachers; none = no soft labels


@dataclass
class LoggerConfig:
    """conf/logger/: where training curves go (embedlab/training/loggers.py)."""

    kind: str = "wandb"  # wandb | csv (CSV files in <run dir>/logs, no service needed)
    mode: str = "offline"  # wandb: offline | online | disabled (offline runs land in <run dir>/wandb; `wandb sync`)
    project: str = "embedlab"  # wandb project
    group: str | None = None  # wandb group (null: a multirun's runs share its sweep directory as group)
    tags: list[str] = field(default_factory=list)  # wandb tags (a multirun adds each varied knob, e.g. seed=1)


@dataclass
class MixtureEntryConfig:
    """One dataset of `data.mixture` (embedlab/data/rows.py lists the kinds and formats)."""

    name: str = MISSING  # unique within the mixture; ids become "<name>:<id>", logs count batches by it
    kind: str = MISSING  # texts | pairs | pairs_negatives | scored | sts | classification | clustering
    path: str = MISSING  # file or folder of shards (relative to data.root), or hub:<owner>/<name> (online)
    format: str = (
        "jsonl"  # jsonl (embedlab's records) | flag (FlagEmbedding) | st (sentence-transformers) | genq | beir
    )
    split: str | None = None  # keep records whose "split" field is this (beir: the qrels split; hub: the split)
    subset: str | None = None  # hub dataset configuration name
    instruction: str | None = None  # the query (or text) instruction; null = the student's query prompt
    document_instruction: str | None = None  # the documents' instruction; null = the student's document prompt
    max_length: int | None = None  # query tokens; null = data.max_length
    document_max_length: int | None = None  # document tokens; null = max_length
    weight: float | None = None  # sampling weight; null on every entry = size-proportional (data.temperature)
    num_negatives: int = 0  # pairs_negatives: hard negatives per row; scored: candidates per list minus one
    min_score: float | None = None  # sts: pairs scored below this (the file's scale) are not positives, left out


@dataclass
class DataConfig:
    """What every conf/data entry carries: where the data is and how its examples become batches. Each kind has
    its schema, stored as data/<kind>_schema: a preset starts with `defaults: [<kind>_schema, _self_]`."""

    kind: str = MISSING  # text | pairs | scored | mixture (the schema sets it)
    root: str | None = None  # data root; null = $EMBEDLAB_DATA, then ../shared/data, then ~/.cache/embedlab/data
    batch_size: int = 32  # examples per optimizer step (per device)
    max_length: int = 256  # student tokens per text
    group_by_length: bool = True  # batch similar lengths together (less padding)
    drop_last: bool = True  # drop each source's short last batch (keeps in-batch negatives comparable)
    heldout: int = 0  # examples held out of training (text: to measure the student–teacher cosine on them)


@dataclass
class TextDataConfig(DataConfig):
    """data.kind=text: plain texts (distillation), one batch stream per source (embedlab/data/training.py)."""

    kind: str = "text"  # plain texts: the query field of each example
    sources: list[TextSource] = MISSING  # the text sources, each its own batch stream


@dataclass
class PairsDataConfig(DataConfig):
    """data.kind=pairs: (query, positive, hard negatives) from BEIR qrels or a generated-query file."""

    kind: str = "pairs"  # (query, positive, negatives) tuples
    path: str = MISSING  # BEIR folder, or a JSONL(.gz) of generated-query pairs; relative to the data root
    split: str = "train"  # qrels split (unused for a JSONL file: every line is a training pair)
    negatives_file: str | None = None  # mined negatives ({"query_id", "negative_ids"} JSONL; BEIR folders only)
    num_negatives: int = 0  # hard negatives per query (queries with fewer are skipped)


@dataclass
class ScoredDataConfig(DataConfig):
    """data.kind=scored: scored candidate lists for kl_distill / margin_mse (what embedlab-score writes)."""

    kind: str = "scored"  # (query, candidates, teacher scores) lists
    path: str = MISSING  # JSONL written by embedlab-score
    num_candidates: int = 8  # candidates per query (longer lists are cut, shorter skipped)


@dataclass
class MixtureDataConfig(DataConfig):
    """data=mixture_*: several datasets, one per batch (embedlab/data/mixture.py, embedlab/lit/mixture.py)."""

    kind: str = "mixture"  # the data module: mixture
    mixture: list[MixtureEntryConfig] = field(default_factory=list)  # the datasets
    temperature: float = 1.0  # with no weights: sample dataset d ∝ size_d^(1/temperature) (1 = one pass each)
    on_bad_row: str = "error"  # a malformed row: error (file, line, field) | skip (counted and logged)


@dataclass
class TrainConfig:
    """conf/train.yaml's schema. The groups (model, teacher, trainer) carry their own schemas."""

    model: Any = MISSING  # the student: a conf/model/ entry (schema: EncoderConfig)
    teacher: Any = MISSING  # conf/teacher/ (schema: TeacherConfig)
    loss: Any = MISSING  # one or several conf/loss/ entries (schema: LOSSES[name].settings, embedlab/losses)
    data: Any = MISSING  # conf/data/ (schema: DATA_SCHEMAS[data.kind])
    mining: Any = MISSING  # conf/mining/ (schema: MiningConfig)
    teacher_scores: Any = MISSING  # conf/teacher_scores/ (schema: TeacherScoresConfig)
    trainer: Any = MISSING  # conf/trainer/ (schema: TrainerConfig)
    logger: Any = MISSING  # conf/logger/ (schema: LoggerConfig)
    seed: int = 0  # seeds Python, numpy, torch and the batch sampler
    nonfinite: str = "stop"  # NaN/inf loss or gradient: stop (one error naming the step) | skip (drop the step, warn)
    mining_model: str | None = None  # the model that mines negatives before training (null = the student)
    optim: OptimConfig = field(default_factory=OptimConfig)
    step: StepConfig = field(default_factory=StepConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    eval: TrainEvalConfig = field(default_factory=TrainEvalConfig)
    export: bool = True  # save the trained student (sentence-transformers folder) into <run dir>/model
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    resume: Any = False  # true = this run directory's last checkpoint; or a run directory / .ckpt (a string)


SCHEMA = "schema"  # each typed group's schema entry: conf/<group>/*.yaml start with `defaults: [schema, _self_]`
GROUP_SCHEMAS = {
    "model": EncoderConfig,
    "teacher": TeacherConfig,
    "trainer": TrainerConfig,
    "mining": MiningConfig,
    "logger": LoggerConfig,
    "teacher_scores": TeacherScoresConfig,
}
DATA_SCHEMAS = {c.kind: c for c in (TextDataConfig, PairsDataConfig, ScoredDataConfig, MixtureDataConfig)}


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent: storing again replaces the same entries)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, node in GROUP_SCHEMAS.items():
        cs.store(group=group, name=SCHEMA, node=node)
    cs.store(group="teacher", name="file_schema", node=TeacherFileConfig)
    for kind, node in DATA_SCHEMAS.items():
        cs.store(group="data", name=f"{kind}_schema", node=node)
    for name, loss in LOSSES.items():  # conf/loss/<name>.yaml: `defaults: [<name>_schema@_here_, _self_]`
        cs.store(group="loss", name=f"{name}_schema", node=loss.settings)


register()
