"""Test doubles shared by the evaluation tests."""

from __future__ import annotations

import math
import zlib

import numpy as np

from embedlab.data import RetrievalData
from embedlab.eval.retrieval import RetrievalSettings


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def at(degrees: float) -> list[float]:
    """A 2-d unit vector at this angle: cosines between such vectors are cosines of angle differences."""
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


class FakeEncoder:
    """Stands in for `Encoder`: a fixed vector per text (else one derived from the text), counting calls."""

    def __init__(self, vectors=None, *, dim: int = 2, name: str = "fake", fingerprint: str = "fake-v1") -> None:
        self.vectors = {text: np.asarray(v, dtype=np.float32) for text, v in (vectors or {}).items()}
        self.dim, self.name, self._fingerprint = dim, name, fingerprint
        self.query_prompt = self.document_prompt = ""
        self.calls = {"query": 0, "document": 0}
        self.encoded: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        if text in self.vectors:
            return self.vectors[text]
        rng = np.random.default_rng(zlib.crc32(text.encode()))
        return unit(rng.standard_normal(self.dim)).astype(np.float32)

    def _encode(self, kind: str, texts: list[str]) -> np.ndarray:
        self.calls[kind] += 1
        self.encoded.extend(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_queries(self, texts: list[str], batch_size: int = 32, **_) -> np.ndarray:
        return self._encode("query", texts)

    def encode_documents(self, texts: list[str], batch_size: int = 32, **_) -> np.ndarray:
        return self._encode("document", texts)

    def fingerprint(self, head: bool = True) -> str:
        return self._fingerprint

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim}


# ---------------------------------------------------------------------------------------------------------
# retrieval on a hand-made task
#
# Documents are 2-d unit vectors at d1 0°, d2 30°, d3 60°, d4 90°, d5 180°; q1 sits at 10°, q2 at 80°.
#   q1 ranks d1 d2 d3 d4 d5; relevant d2 (rank 2), d4 (rank 4):
#      nDCG@10 = (1/log2 3 + 1/log2 5) / (1 + 1/log2 3); recall@1 0, @3 1/2, @5 1; MRR 1/2
#   q2 ranks d4 d3 d2 d1 d5; relevant d4 (rank 1): nDCG 1, recall 1 everywhere, MRR 1
# ---------------------------------------------------------------------------------------------------------
DOC_ANGLES = {"d1": 0, "d2": 30, "d3": 60, "d4": 90, "d5": 180}
QUERIES = {"q1": "first question", "q2": "second question"}
QRELS = {"q1": {"d2": 1, "d4": 1}, "q2": {"d4": 1}}


def tiny_task() -> tuple[RetrievalData, FakeEncoder]:
    corpus = {d: f"document {d}" for d in DOC_ANGLES}
    vectors = {f"document {d}": at(a) for d, a in DOC_ANGLES.items()}
    vectors.update({QUERIES["q1"]: at(10), QUERIES["q2"]: at(80)})
    data = RetrievalData(name="tiny", corpus=corpus, queries=dict(QUERIES), qrels=QRELS, fingerprint="tiny")
    return data, FakeEncoder(vectors)


TINY = RetrievalSettings(top_k=10, k_values=(1, 3, 5, 10))
