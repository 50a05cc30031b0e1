"""What a training batch provides, written once: per kind of training data, the example type it is read into, the
groups of tokenized texts the student embeds, and the `Embeddings` fields the module fills from them.

The config check asks it whether a loss's inputs will be there, the collator which batch to build, the module which
groups to embed, and the cross-device gather which id keys rebuild the in-batch document mask.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedlab.data.training import Example, PairExample, ScoredExample, TextExample
from embedlab.errors import ConfigError

QUERY_KEYS, DOCUMENT_KEYS = "query_keys", "document_keys"  # 63-bit id keys: the in-batch mask is a function of them
LABEL_KEYS = "label_keys"  # classification / clustering batches: rows with equal keys are never each other's negatives


@dataclass(frozen=True)
class BatchKind:
    name: str  # data.kind
    example: type  # what the reader produces
    groups: tuple[str, ...]  # tokenized text groups in the batch, embedded by the student
    provides: frozenset[str]  # `Embeddings` fields the module fills (a configured teacher adds "teacher")


KINDS = {
    "text": BatchKind("text", TextExample, ("query",), frozenset({"query"})),
    "pairs": BatchKind(
        "pairs",
        PairExample,
        ("query", "documents"),
        frozenset({"query", "positive", "negatives", "document_mask"}),
    ),
    "scored": BatchKind(  # candidate 0 is the positive, so InfoNCE runs beside KL on the same lists
        "scored",
        ScoredExample,
        ("query", "candidates"),
        frozenset({"query", "positive", "negatives", "document_mask", "candidates", "teacher_scores"}),
    ),
}


def batch_kind(example: Example) -> BatchKind:
    for kind in KINDS.values():
        if isinstance(example, kind.example):
            return kind
    raise ConfigError(f"cannot collate examples of type {type(example).__name__}")
