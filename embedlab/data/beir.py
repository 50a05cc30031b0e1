"""Reader for BEIR-format retrieval folders (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from embedlab.data.lines import first_seen, read_jsonl, read_lines, string
from embedlab.errors import ConfigError, DataFormatError, EmbedlabError
from embedlab.io import fingerprint, sha256_file

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
QRELS_HEADER = ["query-id", "corpus-id", "score"]


class MissingQrelsDocsWarning(UserWarning):
    """Qrels judge documents that the corpus does not contain (a known upstream quirk of ArguAna)."""


@dataclass(frozen=True)
class RetrievalData:
    name: str
    corpus: dict[str, str]  # doc id -> (title + " " + body).strip(), the string MTEB/BEIR encode
    queries: dict[str, str]  # only the split's queries, in order of first appearance in the qrels
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> relevance
    fingerprint: str  # over the bytes of every file read, the split and the subset limits


def find_data_file(folder: Path, stem: str) -> Path | None:
    # The plain file wins over its gzip twin: it is what a user who ran `gunzip -k` just edited.
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing(path: Path, folder: Path) -> EmbedlabError:
    name = folder.name
    return EmbedlabError(
        f"{path} not found. Get the BEIR '{name}' folder with "
        f"embedlab.data.download_beir({name!r}, {str(folder.parent)!r}), or download "
        f"{BEIR_URL.format(name=name)} and unzip it so that {folder} holds corpus.jsonl, queries.jsonl "
        "and qrels/; or point EMBEDLAB_DATA at a folder that already has it"
    )


def corpus_text(title: str, text: str) -> str:
    """The string a corpus record stands for: BEIR's and MTEB's sentence-transformers wrappers join title and body
    this way, so scores compare."""
    return (title + " " + text).strip()


def read_beir_jsonl(path: Path, optional_title: bool) -> Iterator[tuple[int, str, str]]:
    """Yield (line, _id, text) per record; for corpora, text is the title joined to the body.

    Ids must be unique and texts (after joining) non-blank: an empty document or query is an error, not a skip,
    since it would be encoded as nothing but special tokens (or, for a decoder, as no token at all)."""
    seen: dict[str, int] = {}
    for lineno, rec in read_jsonl(path):
        doc_id = string(path, lineno, "_id", rec.get("_id"))
        first_seen(seen, path, lineno, "_id", doc_id)
        text = string(path, lineno, "text", rec.get("text"), empty_ok=optional_title)
        if optional_title and "title" in rec:
            title = string(path, lineno, "title", rec["title"], empty_ok=True)
            text = corpus_text(title, text)
        elif optional_title:
            text = text.strip()
        if not text:
            raise DataFormatError(path, lineno, "text", "empty document (no title and no text)")
        yield lineno, doc_id, text


def _read_qrels(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """Yield (line, query id, doc id, score); the BEIR header line is required."""
    lineno = 0
    for lineno, line in read_lines(path):
        # Qrels ids are bare tokens (BEIR writes them unquoted), so a tab split is exact here, unlike
        # the quoted STS files; stripping "\r" accepts the CRLF copies found upstream.
        row = line.rstrip("\r\n").split("\t")
        if lineno == 1:
            if [c.strip() for c in row] != QRELS_HEADER:
                expected = "<TAB>".join(QRELS_HEADER)
                raise DataFormatError(path, 1, "header", f"expected {expected!r}, got {row!r}")
            continue
        if not line.strip():
            continue
        if len(row) != 3:
            field = QRELS_HEADER[len(row)] if len(row) < 3 else "columns"
            raise DataFormatError(path, lineno, field, f"expected 3 tab-separated columns, got {len(row)}")
        qid, did, raw = (c.strip() for c in row)
        for field, value in (("query-id", qid), ("corpus-id", did)):
            if not value:
                raise DataFormatError(path, lineno, field, "empty id")
        try:
            score = int(raw)
        except ValueError:
            raise DataFormatError(path, lineno, "score", f"not an integer: {raw!r}") from None
        yield lineno, qid, did, score
    if lineno == 0:
        raise DataFormatError(path, 1, "header", f"empty file; expected {'<TAB>'.join(QRELS_HEADER)!r}")


def read_corpus(folder: str | Path) -> dict[str, str]:
    """A BEIR folder's corpus: doc id -> (title + " " + body).strip(), the string MTEB/BEIR encode."""
    folder = Path(folder)
    path = find_data_file(folder, "corpus.jsonl")
    if path is None:
        raise _missing(folder / "corpus.jsonl", folder)
    return {did: text for _, did, text in read_beir_jsonl(path, optional_title=True)}


def load_beir(
    folder: str | Path,
    split: str = "test",
    name: str | None = None,
    max_docs: int | None = None,
    max_queries: int | None = None,
) -> RetrievalData:
    """Load one split of a BEIR folder, optionally as a deterministic, still-scorable subset.

    ``max_queries`` keeps the split's first queries in qrels order. ``max_docs`` keeps every document
    judged for the kept queries, then fills up with the corpus file's first documents until
    ``max_docs`` in total (more if the judged documents alone exceed it).
    """
    folder = Path(folder)
    for label, value in (("max_docs", max_docs), ("max_queries", max_queries)):
        if value is not None and value < 1:
            raise ConfigError(f"{label} must be a positive integer, got {value}")
    if not folder.is_dir():
        raise _missing(folder, folder)
    corpus_path = find_data_file(folder, "corpus.jsonl") or folder / "corpus.jsonl"
    queries_path = find_data_file(folder, "queries.jsonl") or folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path):
        if not path.is_file():
            raise _missing(path, folder)
    if not qrels_path.is_file():
        present = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise EmbedlabError(f"{qrels_path} not found (no qrels for split {split!r}); splits: {present}")

    all_queries = {qid: text for _, qid, text in read_beir_jsonl(queries_path, optional_title=False)}
    qrels: dict[str, dict[str, int]] = {}
    for lineno, qid, did, score in _read_qrels(qrels_path):
        if qid not in all_queries:
            raise DataFormatError(qrels_path, lineno, "query-id", f"query id {qid!r} is not in {queries_path.name}")
        judged = qrels.setdefault(qid, {})
        if judged.get(did, score) != score:
            raise DataFormatError(qrels_path, lineno, "score", f"conflicting score for ({qid}, {did})")
        judged[did] = score
    if not qrels:
        raise DataFormatError(qrels_path, None, None, "no judgements after the header")

    corpus = read_corpus(folder)
    absent = sorted({d for docs in qrels.values() for d in docs if d not in corpus})
    if absent:
        # Kept on purpose: dropping them would make scores incomparable with published numbers.
        shown = ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
        warnings.warn(
            f"{qrels_path}: {len(absent)} qrels point to documents absent from {corpus_path.name} "
            f"(kept, they count as unretrievable): {shown}",
            MissingQrelsDocsWarning,
            stacklevel=2,
        )

    if max_queries is not None:
        qrels = dict(list(qrels.items())[:max_queries])
    if max_docs is not None:
        keep = {d for docs in qrels.values() for d in docs if d in corpus}
        for did in corpus:
            if len(keep) >= max_docs:
                break
            keep.add(did)
        corpus = {did: text for did, text in corpus.items() if did in keep}  # corpus-file order

    files = [corpus_path, queries_path, qrels_path]
    fp = fingerprint(
        [split, max_docs, max_queries]
        + [part for p in files for part in (p.relative_to(folder).as_posix(), sha256_file(p))]
    )
    return RetrievalData(
        name=name or folder.name,
        corpus=corpus,
        queries={qid: all_queries[qid] for qid in qrels},
        qrels=qrels,
        fingerprint=fp,
    )
