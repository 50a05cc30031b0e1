"""mteb 2's encoder protocol over embedlab Encoders, so MTEB runs its own tasks on any embedlab model.

One adapter holds a document encoder and, optionally, a separate query encoder: LEAF's deployment mode (teacher
documents × student queries), which mteb cannot express with one model. mteb says which side it encodes through
`prompt_type`: documents go to the document encoder with its `document_prompt`; queries, and texts of symmetric
tasks (STS: no prompt type), go to the query encoder with its prompt for the task (`Encoder.query_prompt_for`, keyed
by the MTEB name or embedlab's name of the task) — exactly what embedlab's evaluators feed each side.

A Matryoshka `dim` truncates and renormalises both sides; a storage `precision` applies to documents only (queries
stay float: asymmetric quantisation), and scores are inner products, as in embedlab's grid (`eval.retrieval`): an
mteb cell ranks as the same embedlab cell. Binary is scored float query · ±1 document over the whole corpus
(embedlab's rescoring with every document a candidate); int8 is calibrated on the documents of one encode call,
which mteb makes once per corpus below its 50,000-document chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.data.tasks import spec_for_mteb
from embedlab.eval import quantize
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.io import fingerprint


def prompt_task(encoder, mteb_name: str) -> str | None:
    """The task key the encoder's query prompt is looked up under: the MTEB name (as `SciFact-query`, mteb's own
    spelling, or bare) when it has a prompt of its own, else embedlab's name of the same task (scifact), else None
    (the default query prompt)."""
    spec = spec_for_mteb(mteb_name)
    candidates = [f"{mteb_name}-query", mteb_name, *([spec.name] if spec else [])]
    return next((c for c in candidates if c in encoder.task_prompts), None)


class MtebEncoder:
    """mteb's `EncoderProtocol` (encode, similarity, similarity_pairwise, mteb_model_meta) for embedlab encoders."""

    def __init__(
        self,
        doc_encoder,
        query_encoder=None,
        *,
        dim: int | None = None,
        precision: str = "float32",
        batch_size: int = 64,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.doc_encoder, self.query_encoder = doc_encoder, query_encoder
        self.batch_size, self.cache = batch_size, cache
        self.dim, self.precision = dim, precision  # the grid cell; set between mteb runs
        self._vectors: dict[str, np.ndarray] = {}  # full-size vectors per (side, prompt, texts): one pass a grid

    @property
    def size(self) -> int:
        """The full embedding size: the query side's (retrieval needs both sides equal, checked by the caller)."""
        return self._query_side().dim

    @property
    def mteb_model_meta(self):
        from mteb.models import ModelMeta

        names = [self.doc_encoder.name] + ([self.query_encoder.name] if self.query_encoder is not None else [])
        return ModelMeta.create_empty(
            {
                "name": "embedlab/" + "+".join(str(n).replace("/", "_") for n in names),
                "revision": None,
                "embed_dim": self.dim or self.size,
                "max_tokens": self._query_side().max_length,
                "similarity_fn_name": "dot",
                "framework": ["PyTorch"],
                "use_instructions": bool(self._query_side().task_prompts or self._query_side().query_prompt),
            }
        )

    def _query_side(self):
        return self.query_encoder if self.query_encoder is not None else self.doc_encoder

    def encode(
        self,
        inputs,
        *,
        task_metadata,
        hf_split: str,
        hf_subset: str,
        prompt_type=None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectors of every text the data loader yields (batches of {"text": [...]}), in order."""
        texts = [text for batch in inputs for text in batch["text"]]
        if prompt_type is not None and prompt_type.value == "document":
            emb = self._encode(self.doc_encoder, texts, "document", None)
            return quantize.stored(quantize.truncate(emb, self.dim), self.precision)
        encoder = self._query_side()
        emb = self._encode(encoder, texts, "query", prompt_task(encoder, task_metadata.name))
        return quantize.truncate(emb, self.dim)

    def _encode(self, encoder, texts: list[str], kind: str, task: str | None) -> np.ndarray:
        prompt = encoder.document_prompt if kind == "document" else encoder.query_prompt_for(task)
        key = fingerprint([id(encoder), kind, prompt, *texts])
        if key not in self._vectors:
            self._vectors[key] = np.asarray(
                encode_cached(encoder, texts, kind=kind, cache=self.cache, batch_size=self.batch_size, task=task),
                dtype=np.float32,
            )
        return self._vectors[key]

    @staticmethod
    def similarity(embeddings1, embeddings2):
        """Inner products [n1, n2], as embedlab's search scores (cosine for normalised float vectors)."""
        from mteb.similarity_functions import dot_score

        return dot_score(embeddings1, embeddings2)

    @staticmethod
    def similarity_pairwise(embeddings1, embeddings2):
        from mteb.similarity_functions import pairwise_dot_score

        return pairwise_dot_score(embeddings1, embeddings2)
