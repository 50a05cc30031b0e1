"""Tiny random-init encoders and the texts they embed, shared by the training tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from embedlab.data.training import TextExample
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.lit.teacher import TeacherTable
from embedlab.losses import build_loss
from embedlab.models import Encoder

_TEXTS = (  # distinct enough that a tiny random BERT gives them distinguishable features
    "the cat sat on the mat|proteins fold into shapes|stock markets fell today|rain is expected tomorrow|"
    "a violin concerto in d major|python lists are mutable|the volcano erupted at dawn|gene expression in mice|"
    "football fans cheered loudly|quantum bits can be entangled|bread rises with yeast|the senate passed a bill|"
    "glaciers are melting fast|chess openings and endgames|coffee contains caffeine|whales sing long songs"
)
TEXTS = _TEXTS.split("|")

QUIET = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


def tiny_bert(tok, layers: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    sizes = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": len(tok)}
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}  # same output in train mode
    return AutoModel.from_config(AutoConfig.for_model("bert", num_hidden_layers=layers, **sizes, **no_dropout))


def tiny_encoder(tok, projection: int | None = 16, seed: int = 0, **kwargs) -> Encoder:
    backbone = tiny_bert(tok, seed=seed)
    head = nn.Linear(32, projection) if projection else None
    return Encoder(backbone, tok, projection=head, max_length=64, name=f"tiny{seed}", **kwargs)


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def text_examples() -> list[TextExample]:
    return [TextExample(f"t:{i}", t) for i, t in enumerate(TEXTS)]


def leaf_module(tok, optim: OptimConfig | None = None, student: Encoder | None = None) -> EmbeddingModule:
    """LEAF against a table of fixed random unit vectors, one per text of TEXTS."""
    table = TeacherTable(unit_rows(len(TEXTS), 16, seed=1), "random")
    return EmbeddingModule(student or tiny_encoder(tok), build_loss({"leaf": {}}), optim, teacher_table=table)
