"""Validated training rows, per kind of data and per file format: what gets written into a dataset's Arrow file.

Every value is checked here, in Python, with the record's file and line, before Arrow sees it: Arrow would either
refuse a row with an error that names no line, or silently coerce it. One record may give several rows
(FlagEmbedding's several positives; a BEIR query with several relevant documents).

Kinds and the row each is stored as (the `Example` it becomes in a batch, see `embedlab.data.arrow`):
  texts                         text row      {id, text}                      → TextExample (distillation)
  pairs, pairs_negatives, sts   pair row      {query_id, query, positive_id, positive, negative_ids, negatives}
  scored                        scored row    {query_id, query, candidate_ids, candidates, scores}
  classification, clustering    labelled row  {id, text, label}               → query = text, positive = the label's
                                                                                name (classification) or another
                                                                                text of the cluster (clustering)

Formats (`format` of a mixture entry):
  jsonl   embedlab's own records: texts {id?, text}; pairs {query, positive, negatives?, query_id?, positive_id?};
          scored {query_id, query, candidate_ids, candidates, scores} (as embedlab-score writes); sts {sentence1,
          sentence2, score, split?}; classification / clustering {text, label} (clustering may say `cluster`)
  flag    FlagEmbedding's training JSONL: {query, pos: [...], neg: [...], prompt?, pos_scores?, neg_scores?}
  genq    BEIR's generated-query files: {_id, title, text, query} → (query, passage) pairs, streamed
  st      sentence-transformers' column datasets: (anchor, positive, negative | negative_1, negative_2, ...),
          (sentence1, sentence2, score) or (text, label); JSONL, Parquet or CSV files, or a hub dataset
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedlab.data.beir import corpus_text
from embedlab.data.lines import string, strings
from embedlab.errors import ConfigError, DataFormatError

KINDS = ("texts", "pairs", "pairs_negatives", "scored", "sts", "classification", "clustering")
FORMATS = ("jsonl", "flag", "genq", "st", "beir")  # beir: the staged BEIR folders, see embedlab.data.arrow
STORAGE = {  # kind -> row layout
    "texts": "text",
    "pairs": "pair",
    "pairs_negatives": "pair",
    "sts": "pair",
    "scored": "scored",
    "classification": "labelled",
    "clustering": "labelled",
}

BATCH_KINDS = {kind: {"text": "text", "scored": "scored"}.get(STORAGE[kind], "pairs") for kind in KINDS}  # data.batch


@dataclass(frozen=True)
class RowSpec:
    """How one source's records become rows: what a cached Arrow file depends on besides the bytes it came from."""

    name: str  # the mixture entry's name: ids are "<name>:<id in the source>"
    kind: str
    format: str = "jsonl"
    num_negatives: int = 0  # pairs_negatives: K hard negatives per row (fewer: row skipped); scored: candidates
    min_score: float | None = None  # sts: only pairs at least this similar are positives (the file's own scale)
    split: str | None = None  # keep only records whose "split" field is this (STSb/SICK JSONL hold every split)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"data.mixture entry '{self.name}': kind must be one of {KINDS}, got {self.kind!r}")
        if self.format not in FORMATS:
            raise ConfigError(f"data.mixture entry '{self.name}': format must be one of {FORMATS}, got {self.format!r}")
        if self.kind == "pairs_negatives" and self.num_negatives < 1:
            raise ConfigError(f"data.mixture entry '{self.name}': pairs_negatives needs num_negatives >= 1")
        if self.kind == "scored" and self.num_negatives < 1:
            raise ConfigError(f"data.mixture entry '{self.name}': scored needs num_negatives >= 1 (candidates - 1)")


class Skip(Exception):
    """A record that is well-formed but not wanted (another split, an STS pair below min_score): not a bad row."""


def rows_of(spec: RowSpec, path: Path, line: int, rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one record; a DataFormatError names the field that is wrong."""
    if spec.split is not None and rec.get("split", spec.split) != spec.split:
        raise Skip
    reader = {"jsonl": _native, "flag": _flag, "genq": _genq, "st": _columns}[spec.format]
    return reader(spec, path, line, rec)


def _native(spec: RowSpec, path: Path, line: int, rec: dict) -> list[dict]:
    kind = spec.kind
    if kind == "texts":
        return [text_row(spec, _id(path, line, rec.get("id", line)), string(path, line, "text", rec.get("text")))]
    if kind in ("pairs", "pairs_negatives"):
        query = string(path, line, "query", rec.get("query"))
        positive = string(path, line, "positive", rec.get("positive"))
        negatives = strings(path, line, "negatives", rec.get("negatives", []))
        qid = _id(path, line, rec.get("query_id", line))
        pid = _id(path, line, rec.get("positive_id", f"{qid}#pos"))
        neg_ids = [f"{qid}#neg{i}" for i in range(len(negatives))]
        return [pair_row(spec, path, line, qid, query, pid, positive, neg_ids, negatives)]
    if kind == "sts":
        return [sts_row(spec, path, line, rec, "sentence1", "sentence2")]
    if kind == "scored":
        ids = strings(path, line, "candidate_ids", rec.get("candidate_ids"), min_len=2)
        texts = strings(path, line, "candidates", rec.get("candidates"), min_len=2)
        scores = _numbers(path, line, "scores", rec.get("scores"))
        qid = _id(path, line, rec.get("query_id"))
        return [scored_row(spec, path, line, qid, string(path, line, "query", rec.get("query")), ids, texts, scores)]
    return [labelled_row(spec, path, line, rec, "text")]


def _flag(spec: RowSpec, path: Path, line: int, rec: dict) -> list[dict]:
    """FlagEmbedding: a row per positive (pairs), or one list positive-first (scored: pos + neg with their scores).
    A record's `prompt` is its query instruction, written in front of the query."""
    if spec.kind not in ("pairs", "pairs_negatives", "scored"):
        raise ConfigError(f"data.mixture entry '{spec.name}': format flag reads pairs, pairs_negatives or scored")
    prompt = string(path, line, "prompt", rec.get("prompt", ""), empty_ok=True)
    query = prompt + string(path, line, "query", rec.get("query"))
    pos = strings(path, line, "pos", rec.get("pos"), min_len=1)
    neg = strings(path, line, "neg", rec.get("neg", []))
    qid = f"{line}"
    if spec.kind == "scored":
        scores = _numbers(path, line, "pos_scores", rec.get("pos_scores")) + _numbers(
            path, line, "neg_scores", rec.get("neg_scores")
        )
        texts = pos[:1] + neg
        if len(scores) != len(pos) + len(neg):
            raise DataFormatError(path, line, "neg_scores", f"{len(scores)} scores for {len(pos) + len(neg)} texts")
        scores = scores[:1] + scores[len(pos) :]
        ids = [f"{qid}#pos0"] + [f"{qid}#neg{i}" for i in range(len(neg))]
        return [scored_row(spec, path, line, qid, query, ids, texts, scores)]
    neg_ids = [f"{qid}#neg{i}" for i in range(len(neg))]
    return [pair_row(spec, path, line, qid, query, f"{qid}#pos{i}", p, neg_ids, neg) for i, p in enumerate(pos)]


def _genq(spec: RowSpec, path: Path, line: int, rec: dict) -> list[dict]:
    """As `read_query_pairs`: the passage's id names the positive, so two queries of one passage in a batch are
    not each other's negatives."""
    if spec.kind != "pairs":
        raise ConfigError(f"data.mixture entry '{spec.name}': format genq reads kind pairs")
    doc_id = string(path, line, "_id", rec.get("_id"))
    text, query = string(path, line, "text", rec.get("text")), string(path, line, "query", rec.get("query"))
    title = string(path, line, "title", rec.get("title", ""), empty_ok=True)
    return [pair_row(spec, path, line, f"{doc_id}#{line}", query, doc_id, corpus_text(title, text), [], [])]


def _columns(spec: RowSpec, path: Path, line: int, rec: dict) -> list[dict]:
    """sentence-transformers' convention: columns by position and name (anchor, positive, negative[_i])."""
    if spec.kind in ("pairs", "pairs_negatives"):
        anchor = string(path, line, "anchor", rec.get("anchor"))
        positive = string(path, line, "positive", rec.get("positive"))
        neg_fields = (
            ["negative"]
            if "negative" in rec
            else sorted((k for k in rec if k.startswith("negative_")), key=lambda k: int(k.rsplit("_", 1)[1]))
        )
        negatives = [string(path, line, k, rec[k]) for k in neg_fields]
        qid = str(line)
        neg_ids = [f"{qid}#neg{i}" for i in range(len(negatives))]
        return [pair_row(spec, path, line, qid, anchor, f"{qid}#pos", positive, neg_ids, negatives)]
    if spec.kind == "sts":
        return [sts_row(spec, path, line, rec, "sentence1", "sentence2")]
    if spec.kind in ("classification", "clustering"):
        return [labelled_row(spec, path, line, rec, "text")]
    if spec.kind == "texts":
        return [text_row(spec, str(line), string(path, line, "text", rec.get("text")))]
    raise ConfigError(f"data.mixture entry '{spec.name}': format st does not read kind {spec.kind}")


# --------------------------------------------------------------------------------------------------- row builders
def text_row(spec: RowSpec, text_id: str, text: str) -> dict:
    return {"id": f"{spec.name}:{text_id}", "text": text}


def pair_row(spec, path, line, qid, query, pid, positive, neg_ids, negatives) -> dict:
    k = spec.num_negatives if spec.kind == "pairs_negatives" else 0
    if len(negatives) < k:
        raise DataFormatError(path, line, "negatives", f"{len(negatives)} hard negatives, the entry needs {k}")
    return {
        "query_id": f"{spec.name}:{qid}",
        "query": query,
        "positive_id": f"{spec.name}:{pid}",
        "positive": positive,
        "negative_ids": [f"{spec.name}:{n}" for n in neg_ids[:k]],
        "negatives": list(negatives[:k]),
    }


def scored_row(spec, path, line, qid, query, ids, texts, scores) -> dict:
    if not len(ids) == len(texts) == len(scores):
        raise DataFormatError(path, line, "scores", f"{len(ids)} ids, {len(texts)} candidates, {len(scores)} scores")
    c = spec.num_negatives + 1
    if len(texts) < c:
        raise DataFormatError(path, line, "candidates", f"{len(texts)} candidates, the entry needs {c}")
    return {
        "query_id": f"{spec.name}:{qid}",
        "query": query,
        "candidate_ids": [f"{spec.name}:{i}" for i in ids[:c]],
        "candidates": list(texts[:c]),
        "scores": list(scores[:c]),
    }


def sts_row(spec: RowSpec, path: Path, line: int, rec: dict, first: str, second: str) -> dict:
    """An STS pair as a (query, positive) pair; below `min_score` it is no positive and is left out (Skip)."""
    a, b = string(path, line, first, rec.get(first)), string(path, line, second, rec.get(second))
    score = _number(path, line, "score", rec.get("score"))
    if spec.min_score is not None and score < spec.min_score:
        raise Skip
    return pair_row(spec, path, line, f"{line}", a, f"{line}#2", b, [], [])


def labelled_row(spec: RowSpec, path: Path, line: int, rec: dict, text_field: str) -> dict:
    label_field = "cluster" if spec.kind == "clustering" and "cluster" in rec else "label"
    label = rec.get(label_field)
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)
    return {
        "id": f"{spec.name}:{line}",
        "text": string(path, line, text_field, rec.get(text_field)),
        "label": string(path, line, label_field, label),
    }


def _id(path: Path, line: int, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return string(path, line, "id", value)


def _number(path: Path, line: int, field: str, value: Any) -> float:
    if isinstance(value, str):  # CSV cells are strings
        try:
            value = float(value)
        except ValueError:
            raise DataFormatError(path, line, field, f"not a number: {value!r:.40}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataFormatError(path, line, field, f"not a finite number: {value!r:.40}")
    return float(value)


def _numbers(path: Path, line: int, field: str, value: Any) -> list[float]:
    if not isinstance(value, list):
        raise DataFormatError(path, line, field, f"missing or not a list: {type(value).__name__}")
    return [_number(path, line, f"{field}[{i}]", v) for i, v in enumerate(value)]


def row_iter(spec: RowSpec, records) -> Iterator[tuple[Any, list[dict] | DataFormatError | None]]:
    """(record, its rows | its error | None when skipped on purpose) per record."""
    for rec in records:
        if isinstance(rec.value, DataFormatError):
            yield rec, rec.value
            continue
        try:
            yield rec, rows_of(spec, rec.path, rec.line, rec.value)
        except Skip:
            yield rec, None
        except DataFormatError as e:
            yield rec, e
