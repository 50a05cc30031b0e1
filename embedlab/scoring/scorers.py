"""Teachers that score (query, candidate) lists: a bi-encoder (the "dense retriever") or a cross-encoder reranker.

Both return raw scores [Q, C]; lists are combined after per-query normalisation (`embedlab.scoring.combine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.models.fingerprint import hash_weights


def _rectangular(candidates: Sequence[Sequence[str]]) -> int:
    sizes = {len(c) for c in candidates}
    if len(sizes) != 1 or 0 in sizes:
        raise ConfigError(f"every query needs the same, non-zero number of candidates; got sizes {sorted(sizes)}")
    return sizes.pop()


class BiEncoderScorer:
    """Cosine (inner product of normalised embeddings) between the query and each candidate; every distinct text is
    encoded once, through the embedding cache."""

    def __init__(self, encoder, *, batch_size: int = 64, cache: EmbeddingCache | None = None) -> None:
        self.encoder, self.batch_size, self.cache = encoder, batch_size, cache
        self.name = f"bi-encoder {encoder.name}"

    def fingerprint(self) -> str:
        return self.encoder.fingerprint()

    def score(self, queries: Sequence[str], candidates: Sequence[Sequence[str]]) -> np.ndarray:
        c = _rectangular(candidates)
        docs = list(dict.fromkeys(d for row in candidates for d in row))
        row_of = {d: i for i, d in enumerate(docs)}
        enc = {"cache": self.cache, "batch_size": self.batch_size}
        q = encode_cached(self.encoder, list(queries), kind="query", **enc)
        d = encode_cached(self.encoder, docs, kind="document", **enc)
        index = np.array([[row_of[t] for t in row] for row in candidates], dtype=np.int64).reshape(len(queries), c)
        return np.einsum("qd,qcd->qc", np.asarray(q, np.float32), np.asarray(d, np.float32)[index])


class CrossEncoderScorer:
    """A sequence-classification model over "query [SEP] candidate": the logit of a one-label head, or the
    log-odds of the last class of a multi-label one. Pairs are batched by length (less padding)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        trust_remote_code: bool = False,
        model=None,
        tokenizer=None,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        self.model = model or AutoModelForSequenceClassification.from_pretrained(
            str(path), trust_remote_code=trust_remote_code
        )
        self.max_length, self.batch_size = max_length, batch_size
        self.name = f"cross-encoder {Path(str(path)).name}"

    def fingerprint(self) -> str:
        """Weights, tokenizer size and max length: what changes the scores."""
        h = hash_weights(self.model)
        h.update(repr((type(self.tokenizer).__name__, len(self.tokenizer), self.max_length)).encode())
        return h.hexdigest()

    @torch.no_grad()
    def score(self, queries: Sequence[str], candidates: Sequence[Sequence[str]]) -> np.ndarray:
        c = _rectangular(candidates)
        pairs = [(q, d) for q, row in zip(queries, candidates, strict=True) for d in row]
        order = np.argsort([-(len(q) + len(d)) for q, d in pairs], kind="stable")
        out = np.empty(len(pairs), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        try:
            for start in tqdm(range(0, len(pairs), self.batch_size), desc="reranking", unit="batch", leave=False):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [pairs[i][0] for i in rows],
                    [pairs[i][1] for i in rows],
                    padding=True,
                    truncation="longest_first",
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.model.device)
                logits = self.model(**batch).logits.float()
                score = logits[:, 0] if logits.shape[1] == 1 else logits[:, -1] - torch.logsumexp(logits[:, :-1], 1)
                out[rows] = score.cpu().numpy()
        finally:
            self.model.train(was_training)
        return out.reshape(len(queries), c)
