"""Turn a list of `(index, example)` into the tensors `EmbeddingModule.embed` consumes.

Padding is dynamic (to the longest text of the batch, capped at `max_length`): with length-grouped batches
(see `embedlab.data.batching`) this is where the saved compute comes from. `index` is the example's row in the
data module's flat example list, which is also the row of its cached teacher embedding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch

from embedlab.data.batch import DOCUMENT_KEYS, LABEL_KEYS, QUERY_KEYS, batch_kind
from embedlab.data.tokens import prompt_length
from embedlab.data.training import Example, PairExample, ScoredExample, TextExample
from embedlab.errors import ConfigError

Batch = dict[str, Any]


class Collator:
    def __init__(
        self,
        tokenizer,
        max_length: int,
        query_prompt: str = "",
        document_prompt: str = "",
        prompt_lengths: bool = False,
        *,
        text_prompt: str = "",
        document_max_length: int | None = None,
    ) -> None:
        if max_length < 1 or (document_max_length is not None and document_max_length < 1):
            raise ConfigError(f"max lengths must be at least 1, got {max_length} and {document_max_length}")
        self.tokenizer, self.max_length = tokenizer, max_length
        self.document_max_length = document_max_length or max_length  # documents (positives, negatives, candidates)
        self.query_prompt, self.document_prompt = query_prompt, document_prompt
        # Distillation texts: no prompt by default, so student and teacher see the same string (a mixture's
        # texts entry may set its instruction; the teacher still embeds the raw text).
        self.text_prompt = text_prompt
        self.prompt_lengths = prompt_lengths  # add `prompt_length` [B] so the encoder can leave prompts out of pooling
        for prompt in (query_prompt, document_prompt, text_prompt):
            if prompt and prompt_length(tokenizer, prompt) >= max_length:
                raise ConfigError(
                    f"data.max_length={max_length} but the prompt alone takes {prompt_length(tokenizer, prompt)} "
                    f"tokens (prompt starts {prompt[:60]!r}): raise data.max_length"
                )

    @classmethod
    def for_encoder(cls, encoder, max_length: int | None = None) -> Collator:
        """Tokenizer, length limit (the encoder's unless given) and prompts of the encoder being trained."""
        return cls(
            encoder.tokenizer,
            max_length or encoder.max_length,
            encoder.query_prompt,
            encoder.document_prompt,
            prompt_lengths=not getattr(encoder, "include_prompt", True),
        )

    def tokenize(
        self, texts: Sequence[str], prompt: str = "", max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            [prompt + t for t in texts],
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
        )
        batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if self.prompt_lengths and prompt:  # a [B] tensor, not an int, so a step strategy can split it by rows
            batch["prompt_length"] = torch.full((len(texts),), prompt_length(self.tokenizer, prompt), dtype=torch.long)
        return batch

    def __call__(self, items: Sequence[tuple[int, Example]]) -> Batch:
        if not items:
            raise ConfigError("cannot collate an empty batch")
        index = torch.tensor([i for i, _ in items], dtype=torch.long)
        examples = [e for _, e in items]
        kinds = {type(e).__name__ for e in examples}
        if len(kinds) > 1:
            raise ConfigError(f"a batch mixes example types {sorted(kinds)}; keep one type per training run")
        kind = batch_kind(examples[0])
        batch = {"text": self._texts, "pairs": self._pairs, "scored": self._scored}[kind.name](examples)
        batch["kind"], batch["index"] = kind.name, index
        return batch

    def _texts(self, examples: list[TextExample]) -> Batch:
        texts = [e.text for e in examples]
        return {"query": self.tokenize(texts, self.text_prompt), "texts": texts}

    def _pairs(self, examples: list[PairExample]) -> Batch:
        k = len(examples[0].negatives)
        bad = sorted({n for e in examples for n in (len(e.negatives), len(e.negative_ids)) if n != k})
        if bad:
            raise ConfigError(
                f"a batch mixes {k} and {bad} hard negatives per query; read pairs with a fixed "
                "num_negatives so every query has the same count"
            )
        queries = [e.query for e in examples]
        docs = [e.positive for e in examples] + [n for e in examples for n in e.negatives]
        return {
            "query": self.tokenize(queries, self.query_prompt),
            "documents": self.tokenize(docs, self.document_prompt, self.document_max_length),
            "num_negatives": k,
            **with_mask(id_keys(examples)),
            "texts": queries,
        }

    def _scored(self, examples: list[ScoredExample]) -> Batch:
        c = len(examples[0].candidates)
        bad = sorted({len(e.candidates) for e in examples if len(e.candidates) != c})
        if bad:
            raise ConfigError(
                f"a batch mixes {c} and {bad} candidates per query; read scored lists with a fixed num_candidates"
            )
        queries = [e.query for e in examples]
        candidates = [d for e in examples for d in e.candidates]
        return {
            "query": self.tokenize(queries, self.query_prompt),
            "candidates": self.tokenize(candidates, self.document_prompt, self.document_max_length),
            "num_candidates": c,
            "teacher_scores": torch.tensor([list(e.scores) for e in examples], dtype=torch.float32),
            # contrastive losses read a list as (positive = candidate 0, negatives = the rest): same pool layout
            **with_mask(id_keys([as_pair(e) for e in examples])),
            "texts": queries,
        }


def as_pair(e: ScoredExample) -> PairExample:
    """A scored list as (query, candidate 0 as the positive, the other candidates as hard negatives)."""
    return PairExample(e.query_id, e.query, e.candidate_ids[0], e.candidates[0], e.candidate_ids[1:], e.candidates[1:])


def with_mask(keys: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mask = in_batch_mask(keys[QUERY_KEYS], keys[DOCUMENT_KEYS], keys.get(LABEL_KEYS))
    return {**keys, "document_mask": mask}


def id_key(text_id: str) -> int:
    """A stable 63-bit integer for an id string, so ids can travel as tensors (and be all-gathered across devices)."""
    return int.from_bytes(hashlib.blake2b(text_id.encode(), digest_size=8).digest(), "little") >> 1


def id_keys(examples: Sequence[PairExample]) -> dict[str, torch.Tensor]:
    """`query_keys` [B] and `document_keys` [B*(1+K)] (the pool: B positives, then every hard negative row-major)."""
    pool = [e.positive_id for e in examples] + [n for e in examples for n in e.negative_ids]
    keys = {
        QUERY_KEYS: torch.tensor([id_key(e.query_id) for e in examples], dtype=torch.long),
        DOCUMENT_KEYS: torch.tensor([id_key(d) for d in pool], dtype=torch.long),
    }
    if any(e.label is not None for e in examples):  # unlabelled rows get their own id, so they share no label
        labels = [f"label:{e.label}" if e.label is not None else f"id:{e.query_id}" for e in examples]
        keys[LABEL_KEYS] = torch.tensor([id_key(x) for x in labels], dtype=torch.long)
    return keys


def in_batch_mask(
    query_keys: torch.Tensor, document_keys: torch.Tensor, label_keys: torch.Tensor | None = None
) -> torch.Tensor:
    """[B, P] (P = B*(1+K) pool documents), False where pool document j must not be a negative for query i.

    Query i's known relevant documents are the positives (the first B pool entries) of every example with its query
    id, itself included. A pool document with one of those ids is masked off: the same document as i's positive
    under another copy (two queries sharing a relevant document, or a mined negative that is another query's
    positive), or another relevant document of the same query. With `label_keys` [B] (classification,
    clustering), example k's positive is also masked for every query i with k's label: texts sharing a label are
    never each other's negatives. (i, i) is the target and always True.
    """
    b = query_keys.shape[0]
    same_query = query_keys[:, None] == query_keys[None, :]  # [B, B]
    is_positive_of = document_keys[None, :] == document_keys[:b, None]  # [B, P]: pool j is example k's positive
    known = (same_query.double() @ is_positive_of.double()) > 0  # exact: counts of at most B
    mask = ~known
    if label_keys is not None:
        mask[:, :b] &= label_keys[:, None] != label_keys[None, :]
    mask[torch.arange(b), torch.arange(b)] = True
    return mask
