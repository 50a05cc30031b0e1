"""Training sets: plain texts (distillation), (query, positive, negatives) tuples, and scored candidate lists.

Every example carries ids so a batch can mask duplicate documents and look up cached teacher embeddings.
Sources are named in config; a text's id is `<source>:<id in the source>` so ids stay unique across sources.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedlab.data.beir import corpus_text, find_data_file, load_beir, read_beir_jsonl
from embedlab.data.lines import first_seen, identifier, numbers, read_jsonl, string, strings
from embedlab.data.sts import load_sts
from embedlab.data.tasks import resolve_data_path
from embedlab.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextExample:
    id: str
    text: str


@dataclass(frozen=True)
class PairExample:
    query_id: str
    query: str
    positive_id: str
    positive: str
    negative_ids: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    label: str | None = None  # classification / clustering: rows sharing a label are never each other's negatives


@dataclass(frozen=True)
class ScoredExample:
    query_id: str
    query: str
    candidate_ids: tuple[str, ...]
    candidates: tuple[str, ...]
    scores: tuple[float, ...]  # teacher scores, one per candidate (candidate 0 = the positive for margin_mse)


Example = TextExample | PairExample | ScoredExample


def example_text(example: Example) -> str:
    """The text that stands for an example: a raw text, or a pair's / list's query (teacher targets, lengths)."""
    return example.text if isinstance(example, TextExample) else example.query


TEXT_SOURCES = ("beir_corpus", "beir_sentences", "beir_queries", "sts_sentences", "jsonl")


@dataclass
class TextSource:
    """One text source (a `data.sources` entry of data.kind=text; its schema too)."""

    name: str  # ids become "<name>:<id in the source>"; each source is its own batch stream
    type: str  # beir_corpus | beir_sentences | beir_queries | sts_sentences | jsonl
    path: str  # BEIR folder, STS file or JSONL file, relative to the data root
    split: str = "train"  # beir_queries: the qrels split; sts_sentences: the split
    limit: int | None = None  # keep the first N texts (null = all; 0 = none: leaves the source out of a run)
    text_field: str = "text"  # jsonl: the field holding the text
    id_field: str = "id"  # jsonl: the field holding the id (absent: the line number)


# Sentence boundary: end punctuation, whitespace, then an upper-case letter or digit (abstracts are well-formed).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")
MIN_SENTENCE_CHARS = 20  # shorter fragments ("(n = 12).") carry little meaning for distillation


def read_texts(source: TextSource | Mapping[str, Any], root: str | Path | None = None) -> list[TextExample]:
    """One text source: a `TextSource`, or a mapping of its fields ({name, type, path, split?, limit?, ...})."""
    source = source if isinstance(source, TextSource) else TextSource(**source)
    name, kind, limit = source.name, source.type, source.limit
    if kind not in TEXT_SOURCES:
        raise ConfigError(f"text source '{name}': type {kind!r} is not one of {', '.join(TEXT_SOURCES)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"text source '{name}': limit must be null (all) or >= 0, got {limit}")
    path = resolve_data_path(str(source.path), root)
    if kind in ("beir_corpus", "beir_sentences"):
        corpus = find_data_file(path, "corpus.jsonl")
        if corpus is None:
            raise ConfigError(f"text source '{name}': {path / 'corpus.jsonl'} not found (nor its .gz)")
        items = [(i, t) for _, i, t in read_beir_jsonl(corpus, optional_title=kind == "beir_corpus")]
        if kind == "beir_sentences":  # short, query-like in-domain texts: each body sentence on its own
            items = [
                (f"{i}#{k}", sent)
                for i, t in items
                for k, sent in enumerate(_SENTENCE_END.split(t))
                if len(sent) >= MIN_SENTENCE_CHARS
            ]
    elif kind == "beir_queries":
        data = load_beir(path, split=source.split)
        items = list(data.queries.items())
    elif kind == "sts_sentences":
        pairs = load_sts(path, split=source.split)
        items = [(f"s{i}", s) for i, s in enumerate(dict.fromkeys(pairs.sentences1 + pairs.sentences2))]
    else:
        items = list(_jsonl_texts(path, source.id_field, source.text_field))
    items = items if limit is None else items[:limit]
    kept = [TextExample(f"{name}:{i}", t) for i, t in items if t.strip()]
    if len(kept) < len(items):  # only JSONL sources may hold blank texts: skipped, and said so
        log.warning("text source '%s': %d blank texts skipped", name, len(items) - len(kept))
    return kept


def _jsonl_texts(path: Path, id_field: str, text_field: str) -> Iterator[tuple[str, str]]:
    """(id, text) per line; the id defaults to the line number and must be unique (it keys teacher vectors); blank
    texts are passed on, for `read_texts` to skip and count."""
    seen: dict[str, int] = {}
    for lineno, rec in read_jsonl(path):
        text_id = identifier(path, lineno, id_field, rec.get(id_field, lineno))
        first_seen(seen, path, lineno, id_field, text_id)
        yield text_id, string(path, lineno, text_field, rec.get(text_field), empty_ok=True)


def read_pairs(
    folder: str | Path,
    split: str = "train",
    negatives_file: str | Path | None = None,
    num_negatives: int = 0,
    root: str | Path | None = None,
) -> list[PairExample]:
    """(query, positive) pairs from BEIR qrels (one example per relevant document), with hard negatives from a
    mined JSONL file ({"query_id", "negative_ids": [...]}, as `embedlab-mine` writes) when given.

    `folder` may instead name a JSONL(.gz) file of generated-query pairs (see `read_query_pairs`)."""
    path = resolve_data_path(str(folder), root)
    if path.is_file():
        if negatives_file is not None and num_negatives > 0:
            raise ConfigError(f"{path}: mined negatives need a BEIR folder (a corpus to look them up in)")
        return read_query_pairs(path)
    data = load_beir(path, split=split)
    negatives: dict[str, list[str]] = {}
    if negatives_file is not None and num_negatives > 0:
        path = Path(negatives_file)
        seen: dict[str, int] = {}
        for lineno, rec in read_jsonl(path):
            qid = identifier(path, lineno, "query_id", rec.get("query_id"))
            first_seen(seen, path, lineno, "query_id", qid)
            ids = strings(path, lineno, "negative_ids", rec.get("negative_ids"))
            unknown = [d for d in ids if d not in data.corpus]
            if unknown:
                raise DataFormatError(path, lineno, "negative_ids", f"unknown document ids {unknown[:3]}")
            negatives[qid] = ids
    examples = []
    for qid, docs in data.qrels.items():
        negs = tuple(negatives.get(qid, [])[:num_negatives])
        if num_negatives and len(negs) < num_negatives:
            continue  # a fixed K keeps tensors rectangular; such queries are counted below
        for did, rel in docs.items():
            if rel > 0 and did in data.corpus:
                examples.append(
                    PairExample(
                        qid, data.queries[qid], did, data.corpus[did], negs, tuple(data.corpus[n] for n in negs)
                    )
                )
    if not examples:
        raise ConfigError(f"no training pairs from {folder} split {split!r} (with {num_negatives} negatives each)")
    return examples


def read_query_pairs(path: Path) -> list[PairExample]:
    """BEIR's generated-query training files: one {"_id", "title", "text", "query"} per line, the passage being
    the query's positive. A passage appears once per query, so the positive id (not the line) names the document:
    two queries of one passage in a batch are then not each other's negatives."""
    examples = []
    for lineno, rec in read_jsonl(path):
        doc_id = string(path, lineno, "_id", rec.get("_id"))
        text = string(path, lineno, "text", rec.get("text"))
        query = string(path, lineno, "query", rec.get("query"))
        title = string(path, lineno, "title", rec.get("title", ""), empty_ok=True)
        examples.append(PairExample(f"{doc_id}#{lineno}", query, doc_id, corpus_text(title, text)))
    if not examples:
        raise ConfigError(f"no training pairs in {path}")
    return examples


def read_scored(path: str | Path, num_candidates: int | None = None) -> list[ScoredExample]:
    """Scored lists, JSONL: {"query_id", "query", "candidate_ids", "candidates", "scores"} (as `embedlab-score`
    writes). Lists are cut to `num_candidates` (keeping order) so a batch is rectangular."""
    path = Path(path)
    out = []
    for lineno, rec in read_jsonl(path):
        qid = identifier(path, lineno, "query_id", rec.get("query_id"))
        query = string(path, lineno, "query", rec.get("query"))
        ids = strings(path, lineno, "candidate_ids", rec.get("candidate_ids"), min_len=2)
        texts = strings(path, lineno, "candidates", rec.get("candidates"), min_len=2)
        scores = numbers(path, lineno, "scores", rec.get("scores"))
        if not len(ids) == len(texts) == len(scores):
            raise DataFormatError(
                path, lineno, "scores", f"{len(ids)} candidate_ids, {len(texts)} candidates, {len(scores)} scores"
            )
        k = min(len(ids), num_candidates or len(ids))
        out.append(ScoredExample(qid, query, tuple(ids[:k]), tuple(texts[:k]), tuple(scores[:k])))
    if num_candidates is not None:
        out = [e for e in out if len(e.candidates) == num_candidates]
    if not out:
        raise ConfigError(f"{path}: no scored lists (with {num_candidates} candidates)")
    return out
