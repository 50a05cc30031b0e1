"""Data layer: counts on the real shared data, located errors on broken files, subsets, fingerprints."""

from __future__ import annotations

import gzip
import json
import os
import warnings
import zipfile
from pathlib import Path

import pytest

from embedlab.data import (
    TASKS,
    MissingQrelsDocsWarning,
    RetrievalData,
    StsPairs,
    data_root,
    download_beir,
    load_beir,
    load_sts,
    load_task,
)
from embedlab.data.beir import read_beir_jsonl
from embedlab.errors import ConfigError, DataFormatError, EmbedlabError

REAL = Path(os.environ.get("EMBEDLAB_DATA") or Path(__file__).parents[1].parent / "shared" / "data")
needs_real = pytest.mark.skipif(
    not (REAL / "scifact").is_dir(), reason=f"shared data not found at {REAL} (set EMBEDLAB_DATA)"
)


def n_pairs(data: RetrievalData) -> int:
    return sum(len(docs) for docs in data.qrels.values())


@pytest.fixture(scope="module")
def scifact() -> RetrievalData:
    return load_beir(REAL / "scifact")


# ---------- real data ----------


@needs_real
def test_scifact_counts(scifact: RetrievalData) -> None:
    assert (len(scifact.queries), n_pairs(scifact), len(scifact.corpus)) == (300, 339, 5183)
    assert scifact.name == "scifact"
    # Documents are encoded as title + " " + body, as MTEB/BEIR do.
    with gzip.open(REAL / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    assert scifact.corpus[first["_id"]] == (first["title"] + " " + first["text"]).strip()
    assert set(scifact.queries) == set(scifact.qrels)


@needs_real
def test_arguana_warns_once_about_five_missing_docs_and_keeps_them() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_task("arguana", root=REAL)
    missing = [w for w in caught if issubclass(w.category, MissingQrelsDocsWarning)]
    assert len(missing) == 1 and " 5 qrels" in str(missing[0].message)
    assert (len(data.queries), n_pairs(data), len(data.corpus)) == (1406, 1406, 8674)
    judged = {d for docs in data.qrels.values() for d in docs}
    assert len(judged - set(data.corpus)) == 5
    assert "test-politics-dhwem-pro06b" in judged
    assert TASKS["arguana"].ignore_identical_ids and not TASKS["scifact"].ignore_identical_ids


@needs_real
def test_stsb_test_split_and_a_quoted_row() -> None:
    data = load_task("stsb", root=REAL)
    assert isinstance(data, StsPairs) and len(data) == 1379
    # stsb.tsv line 7658 is a CSV-quoted field with doubled inner quotes.
    i = data.sentences1.index('A young boy jumping into a pool that says "no diving".')
    assert data.sentences2[i] == "A boy jumps into a pool while lifeguards watch."
    assert data.scores[i] == pytest.approx(3.2)
    assert all(0.0 <= s <= 5.0 for s in data.scores)


@needs_real
def test_sick_all_pairs_and_test_split() -> None:
    assert len(load_task("sick", root=REAL)) == 9927  # registry default split is "all" (MTEB SICK-R)
    assert len(load_task("SICK-R", root=REAL, split="test")) == 4927
    with pytest.raises(ConfigError, match=r"'trial' \(500\)"):
        load_sts(REAL / "sick" / "sick.tsv", split="dev")


@needs_real
def test_subset_is_deterministic_and_keeps_judged_docs(scifact: RetrievalData) -> None:
    a = load_task("scifact", root=REAL, limit=20, max_docs=200)
    b = load_task("scifact", root=REAL, limit=20, max_docs=200)
    assert a == b and len(a.queries) == 20 and len(a.corpus) == 200
    assert list(a.queries) == list(scifact.qrels)[:20]
    assert {d for docs in a.qrels.values() for d in docs} <= set(a.corpus)
    assert a.fingerprint != scifact.fingerprint
    small = load_task("scifact", root=REAL, limit=50, max_docs=10)  # judged docs win over max_docs
    assert len(small.corpus) == len({d for docs in small.qrels.values() for d in docs}) > 10


# ---------- malformed inputs (tiny files in tmp_path) ----------


def write_beir(folder: Path, corpus: list[str], queries: list[str], qrels: str, gz: bool = False) -> Path:
    (folder / "qrels").mkdir(parents=True)
    text = "".join(line + "\n" for line in corpus)
    if gz:
        with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        (folder / "corpus.jsonl").write_text(text, encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(q + "\n" for q in queries), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return folder


DOCS = [
    '{"_id": "d1", "title": "T1", "text": "body one", "metadata": {}}',
    '{"_id": "d2", "title": "", "text": " body two ", "metadata": {}}',
    '{"_id": "d3", "text": "no title"}',
]
QUERIES = [
    '{"_id": "q1", "text": "first?"}',
    '{"_id": "q2", "text": "second?"}',
    '{"_id": "q3", "text": "x"}',
]
QRELS = "query-id\tcorpus-id\tscore\nq2\td3\t1\nq1\td1\t2\n"


def test_tiny_folder_plain_and_gzip_agree(tmp_path: Path) -> None:
    plain = load_beir(write_beir(tmp_path / "plain", DOCS, QUERIES, QRELS))
    gz = load_beir(write_beir(tmp_path / "gz", DOCS, QUERIES, QRELS, gz=True))
    assert plain.corpus == gz.corpus == {"d1": "T1 body one", "d2": "body two", "d3": "no title"}
    assert list(plain.queries) == ["q2", "q1"]  # the split's queries only, in qrels order
    assert plain.qrels == {"q2": {"d3": 1}, "q1": {"d1": 2}}


@pytest.mark.parametrize(
    ("target", "lines", "line", "field", "problem"),
    [
        ("corpus", [*DOCS[:2], '{"_id": "d3", "text": '], 3, None, "invalid JSON"),
        ("corpus", [DOCS[0], '{"title": "t", "text": "x"}'], 2, "_id", "missing"),
        ("corpus", [DOCS[0], '{"_id": "d9", "title": "t", "text": 42}'], 2, "text", "not a string"),
        ("corpus", [DOCS[0], '{"_id": "d9", "title": 7, "text": "x"}'], 2, "title", "not a string"),
        ("corpus", [DOCS[0], DOCS[0]], 2, "_id", "duplicate"),
        ("queries", [QUERIES[0], "[1, 2]"], 2, None, "JSON object"),
        ("qrels", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\n", 3, "score", "3 tab-separated"),
        ("qrels", "query-id\tcorpus-id\tscore\nq1\td1\tyes\n", 2, "score", "not an integer"),
        ("qrels", "query-id\tcorpus-id\tscore\nq1\td1\t1.5\n", 2, "score", "not an integer"),
        ("qrels", "q1\td1\t1\n", 1, "header", "expected"),
        ("qrels", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq7\td1\t1\n", 3, "query-id", "not in queries"),
    ],
)
def test_malformed_beir_line_is_located(
    tmp_path: Path, target: str, lines: list[str] | str, line: int, field: str | None, problem: str
) -> None:
    corpus = lines if target == "corpus" else DOCS
    queries = lines if target == "queries" else QUERIES
    qrels = lines if target == "qrels" else QRELS
    folder = write_beir(tmp_path / "ds", corpus, queries, qrels)  # type: ignore[arg-type]
    with pytest.raises(DataFormatError) as info:
        load_beir(folder)
    msg = str(info.value)
    name = {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "test.tsv"}[target]
    assert name in msg and f"line {line}" in msg and problem in msg
    assert info.value.line == line and info.value.field == field
    if field:
        assert f"'{field}'" in msg


def test_bad_utf8_in_gzip_corpus_is_located(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "ds", DOCS, QUERIES, QRELS)
    (folder / "corpus.jsonl").unlink()
    with gzip.open(folder / "corpus.jsonl.gz", "wb") as f:
        f.write((DOCS[0] + "\n").encode() + b'{"_id": "d2", "text": "caf\xe9"}\n')
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl\.gz, line 2: .*UTF-8"):
        load_beir(folder)


def test_missing_qrels_doc_warns_once_with_count(tmp_path: Path) -> None:
    qrels = QRELS + "q3\tgone1\t1\nq3\tgone2\t1\n"
    with pytest.warns(MissingQrelsDocsWarning, match="2 qrels point to documents absent"):
        data = load_beir(write_beir(tmp_path / "ds", DOCS, QUERIES, qrels))
    assert data.qrels["q3"] == {"gone1": 1, "gone2": 1}


def test_missing_files_say_how_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(EmbedlabError, match=r"scifact.*download_beir\('scifact'.*EMBEDLAB_DATA"):
        load_beir(tmp_path / "scifact")
    folder = write_beir(tmp_path / "ds", DOCS, QUERIES, QRELS)
    (folder / "queries.jsonl").unlink()
    with pytest.raises(EmbedlabError, match=r"queries\.jsonl not found"):
        load_beir(folder)
    with pytest.raises(EmbedlabError, match=r"split 'dev'.*\['test'\]"):
        load_beir(write_beir(tmp_path / "ds2", DOCS, QUERIES, QRELS), split="dev")


STS_HEADER = "sentence1\tsentence2\tscore\tsplit\n"


@pytest.mark.parametrize(
    ("body", "line", "field", "problem"),
    [
        (STS_HEADER + "a\tb\t1.0\ttest\nc\td\thigh\ttest\n", 3, "score", "not a number"),
        (STS_HEADER + "a\tb\t1.0\ttest\nc\td\tnan\ttrain\n", 3, "score", "finite"),
        (STS_HEADER + "a\tb\t1.0\n", 2, "split", "missing value"),
        (STS_HEADER + "a\tb\t1.0\ttest\textra\n", 2, "columns", "5 fields"),
        (STS_HEADER + "a\t \t1.0\ttest\n", 2, "sentence2", "empty"),
        ("sentence1\tsentence2\tsplit\na\tb\ttest\n", 1, "score", "missing column"),
        (STS_HEADER + 'a\t"unclosed "q" \t1\ttest\n', 2, None, "malformed CSV"),
    ],
)
def test_malformed_sts_row_is_located(tmp_path: Path, body: str, line: int, field: str | None, problem: str) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        load_sts(path)
    msg = str(info.value)
    assert "pairs.tsv" in msg and f"line {line}" in msg and problem in msg
    assert info.value.field == field
    if field:
        assert f"'{field}'" in msg


def test_sts_quotes_split_all_and_unknown_split(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text(STS_HEADER + '"say ""hi"""\tb\t2\ttrain\nc\t"tab\tinside"\t4.5\ttest\n', encoding="utf-8")
    assert load_sts(path, split="all").sentences1 == ['say "hi"', "c"]
    assert load_sts(path).sentences2 == ["tab\tinside"]
    assert load_sts(path, split="all", max_pairs=1).scores == [2.0]
    with pytest.raises(ConfigError, match=r"split 'dev'.*'test' \(1\), 'train' \(1\)"):
        load_sts(path, split="dev")


def test_fingerprint_follows_file_bytes(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "ds", DOCS, QUERIES, QRELS)
    before = load_beir(folder).fingerprint
    assert load_beir(folder).fingerprint == before
    assert load_beir(folder, max_docs=2).fingerprint != before
    corpus = folder / "corpus.jsonl"
    corpus.write_bytes(corpus.read_bytes().replace(b"body one", b"body One"))
    assert load_beir(folder).fingerprint != before
    sts = tmp_path / "pairs.tsv"
    sts.write_text(STS_HEADER + "a\tb\t1.0\ttest\n", encoding="utf-8")
    fp = load_sts(sts).fingerprint
    sts.write_text(STS_HEADER + "a\tb\t1.5\ttest\n", encoding="utf-8")
    assert load_sts(sts).fingerprint != fp


# ---------- download and registry ----------


def test_download_offline_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedlabError, match=r"could not download .*offline\?.*EMBEDLAB_DATA") as info:
        download_beir("scifact", tmp_path, url="http://embedlab-test.invalid/scifact.zip", timeout=2)
    assert str(tmp_path / "scifact") in str(info.value)
    assert not (tmp_path / "scifact").exists()


def _zip_of(folder: Path, name: str, dest: Path) -> str:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"{name}/{f.relative_to(folder).as_posix()}")
    return dest.as_uri()


def test_download_extracts_records_sha256_and_checks_known_md5(tmp_path: Path) -> None:
    src = write_beir(tmp_path / "src", DOCS, QUERIES, QRELS)
    url = _zip_of(src, "tiny", tmp_path / "tiny.zip")
    root = tmp_path / "root"
    folder = download_beir("tiny", root, url=url)
    assert load_beir(folder).corpus == load_beir(src).corpus
    record = json.loads((folder / "download.json").read_text())
    assert len(record["sha256"]) == 64 and record["md5_verified"] is False
    assert download_beir("tiny", root, url="http://embedlab-test.invalid/x.zip") == folder  # no refetch
    # A zip that is not the published scifact archive must be refused, leaving nothing behind.
    fake = _zip_of(src, "scifact", tmp_path / "scifact.zip")
    with pytest.raises(EmbedlabError, match="checksum mismatch"):
        download_beir("scifact", root, url=fake)
    assert not (root / "scifact").exists()


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDLAB_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "cfg") == tmp_path / "cfg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("EMBEDLAB_DATA")
    assert data_root() in (
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
        Path("~/.cache/embedlab/data").expanduser(),
    )


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known tasks: arguana, scifact, sick, stsb"):
        load_task("nfcorpus", root=tmp_path)
    with pytest.raises(EmbedlabError, match=r"scifact.*does not exist.*from the configuration.*allow_download"):
        load_task("scifact", root=tmp_path)
    with pytest.raises(EmbedlabError, match=r"stsb\.tsv does not exist"):
        load_task("stsb", root=tmp_path)
    assert {t.main_metric for t in TASKS.values()} == {"ndcg_at_10", "cosine_spearman"}
    assert TASKS["sick"].split == "all"


@pytest.mark.parametrize(
    ("encoding", "line", "problem"),
    [
        ("utf-16", 1, "not UTF-8 but UTF-16 text; convert it (iconv -f UTF-16 -t UTF-8)"),
        ("utf-32", 1, "not UTF-8 but UTF-32 text"),
        ("utf-16-le", 1, "NUL bytes (UTF-16 text?"),  # no byte-order mark: valid UTF-8, but full of NULs
        ("latin-1", 2, "not valid UTF-8 (invalid continuation byte; a latin-1 or cp1252 file?"),
    ],
)
def test_other_encodings_are_named(tmp_path: Path, encoding: str, line: int, problem: str) -> None:
    body = '{"_id": "q1", "text": "plain"}\n{"_id": "q2", "text": "café au lait"}\n'
    path = tmp_path / "queries.jsonl"
    path.write_bytes(body.encode(encoding))
    with pytest.raises(DataFormatError) as err:
        list(read_beir_jsonl(path, optional_title=False))
    assert (err.value.line, err.value.field) == (line, None) and err.value.problem.startswith(problem)
    path.write_bytes(body.encode("utf-8-sig"))  # an editor's byte-order mark is fine
    assert [i for _, i, _ in read_beir_jsonl(path, optional_title=False)] == ["q1", "q2"]
