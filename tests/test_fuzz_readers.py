"""Property-based fuzzing of every data reader (see fuzzing.py for the mutations and the oracle).

Each test draws valid records, breaks them, writes the file and reads it: the reader must return (and, for an
unbroken file, return exactly the records) or raise one located DataFormatError / ConfigError. Valid files have a
strategy of their own, drawn for about half the inputs (breaking at random leaves few files intact), so the
read-back check runs on 70-200 files per reader; the module checks that share at its end. Run with
`EMBEDLAB_FUZZ_REPORT=counts.json` to keep the number of inputs per reader.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from fuzzing import (
    COUNTS,
    FUZZ,
    VALID,
    gzipped,
    ids,
    json_values,
    jsonl_text,
    mutate_bytes,
    mutate_records,
    report,
    run_reader,
    texts,
    workdir,
)
from hypothesis import given
from hypothesis import strategies as st

from embedlab.data import load_beir, load_sts
from embedlab.data.beir import read_corpus
from embedlab.data.training import read_pairs, read_scored, read_texts
from embedlab.lit.teacher import TeacherTable
from embedlab.scoring.lists import read_mined_lists

CORPUS = {"d1": "first document", "d2": "second document", "d3": "third document"}
QUERIES = {"q1": "first query", "q2": "second query"}
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"


VALID_SHARE = 0.2  # at least this share of each reader's inputs are valid files, read back exactly


@pytest.fixture(scope="module", autouse=True)
def counts():
    yield
    report(os.environ.get("EMBEDLAB_FUZZ_REPORT"))
    rare = {r: (VALID[r], n) for r, n in COUNTS.items() if n >= 50 and VALID[r] < VALID_SHARE * n}
    assert not rare, f"(valid, inputs) per reader: too few valid files were read back: {rare}"


def write_beir(folder: Path, corpus: bytes | None = None, queries: bytes | None = None, qrels: bytes | None = None):
    """A BEIR folder: the given files' bytes, the small valid ones above for the rest."""
    (folder / "qrels").mkdir(parents=True)
    corpus_records = [{"_id": k, "title": "", "text": v} for k, v in CORPUS.items()]
    (folder / "corpus.jsonl").write_bytes(corpus or jsonl_text(corpus_records, True).encode())
    queries_records = [{"_id": k, "text": v} for k, v in QUERIES.items()]
    (folder / "queries.jsonl").write_bytes(queries or jsonl_text(queries_records, True).encode())
    (folder / "qrels" / "test.tsv").write_bytes(qrels or QRELS.encode())
    return [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"]


def unique_records(make, keys=ids):
    return st.lists(st.tuples(keys, texts, texts), min_size=1, max_size=6, unique_by=lambda r: r[0]).map(
        lambda rows: [make(*row) for row in rows]
    )


def valid_jsonl(records):
    """(records, file bytes, True): the records unchanged, as UTF-8 with or without a BOM, escaped or not."""

    @st.composite
    def build(draw):
        recs = draw(records)
        text = jsonl_text(recs, draw(st.booleans()))
        return recs, text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig"]))), True

    return build()


def fuzzed_jsonl(records, text_keys: tuple[str, ...]):
    """(records, file bytes, whether the file is the records unchanged): a valid file about half the time."""

    @st.composite
    def build(draw):
        recs = draw(records)
        broken = draw(mutate_records(recs, text_keys))
        text = jsonl_text(broken, draw(st.booleans()))
        data = draw(mutate_bytes(text))
        intact = broken == recs and data.decode("utf-8-sig", errors="replace") == text
        return recs, data, intact

    return st.one_of(valid_jsonl(records), build())


def beir_corpus(did: str, title: str, text: str) -> dict:
    return {"_id": did, "title": title, "text": text}


# ------------------------------------------------------------------------------------------------ BEIR


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@FUZZ
@given(case=fuzzed_jsonl(unique_records(beir_corpus), ("title", "text")), data=st.data())
def test_beir_corpus(gz: bool, case, data) -> None:
    records, raw, intact = case
    if gz:  # a valid file packed intact; a broken one packed intact, cut short or with a flipped byte
        raw, packed_intact = (gzip.compress(raw, mtime=0), True) if intact else data.draw(gzipped(raw))
        intact = intact and packed_intact
    expected = {r["_id"]: (r["title"] + " " + r["text"]).strip() for r in records}
    with workdir() as folder:
        path = folder / ("corpus.jsonl.gz" if gz else "corpus.jsonl")
        path.write_bytes(raw)
        got = run_reader(
            "beir corpus" + (" (.gz)" if gz else ""),
            lambda: read_corpus(folder),
            [path],
            folder,
            expect=expected.__eq__ if intact else None,
        )
        if got is not None:
            assert all(isinstance(t, str) and t.strip() for t in got.values())


@FUZZ
@given(case=fuzzed_jsonl(unique_records(lambda q, t, _: {"_id": q, "text": t}), ("text",)))
def test_beir_queries(case) -> None:
    records, raw, intact = case
    with workdir() as folder:
        qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"{r['_id']}\td1\t1\n" for r in records)
        files = write_beir(folder, queries=raw, qrels=qrels.encode())
        expected = {r["_id"]: r["text"] for r in records}
        run_reader(
            "beir queries",
            lambda: load_beir(folder),
            files,
            folder,
            expect=(lambda d: d.queries == expected) if intact else None,
        )


@st.composite
def tsv_rows(draw, rows: list[list[str]]) -> list[list[str]]:
    """One cell-level mutation (or none) of TSV rows (the header is row 0)."""
    rows = [list(r) for r in rows]
    kind = draw(st.sampled_from(["none", "drop", "add", "replace", "blank", "duplicate", "huge", "header"]))
    if kind == "none":
        return rows
    i = draw(st.integers(1 if kind != "header" else 0, len(rows) - 1)) if len(rows) > 1 else 0
    j = draw(st.integers(0, len(rows[i]) - 1))
    if kind == "drop":
        del rows[i][j]
    elif kind == "add":
        rows[i].append(draw(st.text(max_size=8)))
    elif kind in ("replace", "header"):
        rows[i][j] = draw(st.text(max_size=12))
    elif kind == "blank":
        rows[i][j] = draw(st.sampled_from(["", " ", '""']))
    elif kind == "duplicate":
        rows.append(list(rows[i]))
    else:
        rows[i][j] = HUGE_CELL
    return rows


HUGE_CELL = "x" * 200_000


JUDGEMENTS = st.tuples(st.sampled_from(list(QUERIES)), st.sampled_from(list(CORPUS)), st.integers(0, 3))


@FUZZ
@given(valid=st.booleans(), data=st.data())
def test_beir_qrels(valid: bool, data) -> None:
    if valid:  # each pair judged once, the file unbroken
        qrels = data.draw(st.lists(JUDGEMENTS, min_size=1, unique_by=lambda j: j[:2]))
    else:
        qrels = data.draw(st.lists(JUDGEMENTS))
    rows = [["query-id", "corpus-id", "score"], *([q, d, str(s)] for q, d, s in qrels)]
    broken = rows if valid else data.draw(tsv_rows(rows))
    text = "".join("\t".join(r) + "\n" for r in broken)
    raw = text.encode() if valid else data.draw(mutate_bytes(text))
    expected = {}
    for q, d, score in qrels:
        expected.setdefault(q, {})[d] = score
    # Valid: unbroken, and no pair judged twice with two scores (that conflict is refused on purpose).
    intact = broken == rows and raw == text.encode() and len(set(qrels)) == len({(q, d) for q, d, _ in qrels})
    with workdir() as folder:
        files = write_beir(folder, qrels=raw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a judged document absent from the corpus warns, by design
            got = run_reader(
                "beir qrels",
                lambda: load_beir(folder),
                files,
                folder,
                expect=(lambda d: d.qrels == expected) if intact and qrels else None,
            )
        if got is not None:
            assert set(got.qrels) <= set(QUERIES) and all(
                isinstance(s, int) for d in got.qrels.values() for s in d.values()
            )


# ------------------------------------------------------------------------------------------------ STS


def sts_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    # CRLF rows: with a bare "\n" terminator, csv would leave a "\r" inside a sentence unquoted.
    csv.writer(buffer, delimiter="\t", lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


@FUZZ
@given(
    pairs=st.lists(st.tuples(texts, texts, st.floats(0, 5), st.sampled_from(["train", "test"])), min_size=1),
    valid=st.booleans(),
    data=st.data(),
)
def test_sts_tsv(pairs, valid: bool, data) -> None:
    rows = [["sentence1", "sentence2", "score", "split"], *([a, b, repr(s), sp] for a, b, s, sp in pairs)]
    broken = rows if valid else data.draw(tsv_rows(rows))
    raw = sts_text(rows).encode() if valid else data.draw(mutate_bytes(sts_text(broken)))
    with workdir() as folder:
        path = folder / "sts.tsv"
        path.write_bytes(raw)
        expected = [(a, b, s) for a, b, s, _ in pairs]
        run_reader(
            "sts tsv",
            lambda: load_sts(path, split="all"),
            [path],
            folder,
            expect=(lambda d: list(zip(d.sentences1, d.sentences2, d.scores, strict=True)) == expected)
            if broken == rows and raw == sts_text(rows).encode()
            else None,
        )


# ------------------------------------------------------------------------------------------------ training sets


@FUZZ
@given(case=fuzzed_jsonl(unique_records(lambda i, t, _: {"id": i, "text": t}), ("text",)))
def test_training_texts_jsonl(case) -> None:
    records, raw, intact = case
    with workdir() as folder:
        path = folder / "texts.jsonl"
        path.write_bytes(raw)
        expected = [(f"j:{r['id']}", r["text"]) for r in records]
        run_reader(
            "training texts jsonl",
            lambda: read_texts({"name": "j", "type": "jsonl", "path": str(path)}),
            [path],
            folder,
            expect=(lambda got: [(e.id, e.text) for e in got] == expected) if intact else None,
        )


def mined_record(qid: str, query: str, _: str) -> dict:
    return {"query_id": qid, "query": query, "positive_ids": ["d1"], "negative_ids": ["d2", "d3"]}


@FUZZ
@given(case=fuzzed_jsonl(unique_records(mined_record, st.sampled_from(list(QUERIES)) | ids), ("query",)))
def test_mined_negatives_for_pairs(case) -> None:
    records, raw, intact = case
    with workdir() as folder:
        files = write_beir(folder / "beir")
        path = folder / "negatives.jsonl"
        path.write_bytes(raw)
        known = {r["query_id"] for r in records} & set(QUERIES)  # negatives for other queries are unused
        got = run_reader(
            "mined negatives (pairs)",
            lambda: read_pairs(folder / "beir", "test", path, 1),
            [*files, path],
            folder,
            expect=(lambda got: {p.query_id for p in got} == known) if intact and known else None,
        )
        if got is not None:
            assert all(len(p.negatives) == 1 and p.negatives[0] in CORPUS.values() for p in got)


@FUZZ
@given(case=fuzzed_jsonl(unique_records(mined_record), ("query",)))
def test_mined_lists_for_scoring(case) -> None:
    records, raw, intact = case
    with workdir() as folder:
        path = folder / "negatives.jsonl"
        path.write_bytes(raw)
        expected = [r["query_id"] for r in records]
        run_reader(
            "mined lists (scoring)",
            lambda: read_mined_lists(path, CORPUS, 2),
            [path],
            folder,
            expect=(lambda got: got.query_ids == expected) if intact else None,
        )


def scored_record(qid: str, query: str, text: str) -> dict:
    return {"query_id": qid, "query": query, "candidate_ids": ["a", "b"], "candidates": [text, "b"], "scores": [2, 1]}


@FUZZ
@given(case=fuzzed_jsonl(unique_records(scored_record), ("query",)))
def test_scored_lists(case) -> None:
    records, raw, intact = case
    with workdir() as folder:
        path = folder / "scored.jsonl"
        path.write_bytes(raw)
        expected = [r["candidates"][0] for r in records]
        got = run_reader(
            "scored lists",
            lambda: read_scored(path),
            [path],
            folder,
            expect=(lambda got: [e.candidates[0] for e in got] == expected) if intact else None,
        )
        if got is not None:
            assert all(np.isfinite(e.scores).all() and len(e.scores) == len(e.candidates) for e in got)


# ------------------------------------------------------------------------------------------------ teacher files


def teacher_record(key: str, _: str, __: str) -> dict:
    return {"id": key, "embedding": [0.5, -1.0, 2.0]}


@FUZZ
@given(case=fuzzed_jsonl(unique_records(teacher_record), ("id",)))
def test_teacher_jsonl(case) -> None:
    records, raw, intact = case
    with workdir() as folder:
        path = folder / "teacher.jsonl"
        path.write_bytes(raw)
        wanted = [r["id"] for r in records]
        got = run_reader(
            "teacher jsonl",
            lambda: TeacherTable.from_file(path, wanted),
            [path],
            folder,
            expect=(lambda t: t.embeddings.shape == (len(wanted), 3)) if intact else None,
        )
        if got is not None:
            assert np.isfinite(got.embeddings).all()


@st.composite
def npz_bytes(draw) -> tuple[bytes, bool, list[float]]:
    n, d = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    values = st.floats(-1e6, 1e6, width=32)  # finite: a NaN is the "nan" break
    vectors = np.array(draw(st.lists(st.lists(values, min_size=d, max_size=d), min_size=n, max_size=n)), np.float32)
    arrays = {"ids": np.array([f"t{i}" for i in range(n)]), "embeddings": vectors}
    broken = ["missing", "shape", "object", "strings", "nan", "duplicate", "json", "truncate"]
    kind = draw(st.sampled_from(["none"] * len(broken) + broken))  # a valid file about half the time
    if kind == "missing":
        del arrays[draw(st.sampled_from(sorted(arrays)))]
    elif kind == "shape":
        arrays["embeddings"] = np.ones(draw(st.sampled_from([(n,), (n + 1, d), (n, 0), (n, 2, 2)])), np.float32)
    elif kind == "object":
        arrays["embeddings"] = np.array([[draw(json_values)] * d] * n, dtype=object)
    elif kind == "strings":
        arrays["embeddings"] = np.full((n, d), "x")
    elif kind == "nan":
        arrays["embeddings"][0, 0] = np.nan
    elif kind == "duplicate":
        arrays["ids"] = np.array(["t0"] * n)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=True, **arrays)
    data = buffer.getvalue()
    first = vectors[0].tolist()  # t0's vector, what a valid file gives back
    if kind == "json":
        return data.decode("latin-1").encode("utf-8"), False, first  # re-encoded as text by a careless tool
    if kind == "none":
        return data, True, first
    at = draw(st.integers(0, len(data) - 1))  # a cut: always for "truncate", now and then on top of another break
    cut = at if kind == "truncate" else draw(st.sampled_from([None, None, at]))
    return (data[:cut] if cut is not None else data), False, first


@FUZZ
@given(case=npz_bytes())
def test_teacher_npz(case) -> None:
    raw, intact, first = case
    with workdir() as folder:
        path = folder / "teacher.npz"
        path.write_bytes(raw)
        run_reader(
            "teacher npz",
            lambda: TeacherTable.from_file(path, ["t0"]),
            [path],
            folder,
            expect=(lambda t: t.embeddings.tolist() == [first]) if intact else None,
        )
