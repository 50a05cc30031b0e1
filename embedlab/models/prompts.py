"""Query prompts for instruction-following embedders: a task instruction, optionally after k in-context examples.

A query prompt is a fixed string prepended to every query of a task (documents get none), so it travels through
`Encoder.query_prompt`, the embedding cache key and the sentence-transformers `prompts` of an exported folder
unchanged. Its token count is measured the way sentence-transformers measures it, so excluding the prompt from
pooling gives the same vectors in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from embedlab.data.training import read_pairs
from embedlab.errors import ConfigError

INSTRUCTION_TEMPLATE = "Instruct: {task}\nQuery: "  # the text follows directly
EXAMPLE_TEMPLATE = "Example query: {query}\nExample passage: {passage}\n\n"
DEFAULT_TASK = "default"  # the instruction used for training and for tasks without their own


@dataclass(frozen=True)
class FewShot:
    """k (query, passage) examples drawn once from a BEIR split, the same for every query of a run."""

    k: int = 0  # examples per prompt; 0 = none
    path: str | None = None  # BEIR folder the pool comes from (relative to the data root)
    split: str = "train"  # its qrels split: the pool must not share queries with the evaluated split
    seed: int = 0  # which examples: the same seed gives the same examples in the same order
    passage_words: int = 48  # each example passage is cut to this many words (they share max_length with the query)
    root: str | None = None  # data root; None = $EMBEDLAB_DATA, then the defaults of embedlab.data.tasks

    @classmethod
    def from_node(cls, node: Mapping) -> FewShot:
        unknown = sorted(set(node) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown model.few_shot setting(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**node)

    def check(self) -> None:
        if self.k < 0 or self.passage_words < 1:
            raise ConfigError(f"few_shot: k must be >= 0 and passage_words >= 1, got {self.k}, {self.passage_words}")
        if self.k and not self.path:
            raise ConfigError("few_shot.k > 0 needs few_shot.path (a BEIR folder whose pairs are the pool)")


def pick_examples(pool: Sequence[tuple[str, str]], k: int, seed: int) -> list[tuple[str, str]]:
    """k distinct pool entries chosen by `seed` (numpy's PCG64, stable across platforms and versions)."""
    if k > len(pool):
        raise ConfigError(f"few_shot.k={k} but the pool has only {len(pool)} examples")
    rows = np.random.default_rng(seed).choice(len(pool), size=k, replace=False)
    return [pool[int(i)] for i in rows]


def few_shot_block(examples: Sequence[tuple[str, str]], passage_words: int) -> str:
    return "".join(
        EXAMPLE_TEMPLATE.format(query=q.strip(), passage=" ".join(p.split()[:passage_words])) for q, p in examples
    )


def load_pool(shots: FewShot) -> list[tuple[str, str]]:
    """(query, passage) pairs of the configured split, in file order (so a seed means the same thing every run)."""
    assert shots.path is not None
    return [(e.query, e.positive) for e in read_pairs(shots.path, shots.split, root=shots.root)]


def query_prompts(instructions: Mapping[str, str] | None, shots: FewShot | None = None) -> dict[str, str]:
    """Task name -> full query prompt: the few-shot block (when k > 0), then the instruction line."""
    if not instructions:
        if shots is not None and shots.k:
            raise ConfigError("few_shot examples need an instruction: set model.instructions")
        return {}
    block = ""
    if shots is not None and shots.k:
        shots.check()
        block = few_shot_block(pick_examples(load_pool(shots), shots.k, shots.seed), shots.passage_words)
    bad = [t for t, text in instructions.items() if not isinstance(text, str) or not text.strip()]
    if bad:
        raise ConfigError(f"model.instructions: empty or non-string instruction for task(s) {bad}")
    return {task: block + INSTRUCTION_TEMPLATE.format(task=text.strip()) for task, text in instructions.items()}
