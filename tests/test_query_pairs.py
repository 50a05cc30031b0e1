"""Generated-query training pairs (BEIR's `<task>-generated-queries` train.jsonl.gz) read as pair data."""

from __future__ import annotations

import gzip
import json

import pytest

from embedlab.data.collate import id_keys, in_batch_mask
from embedlab.data.training import read_pairs
from embedlab.errors import ConfigError, DataFormatError

GENQ = "arguana/generated-queries/train.jsonl.gz"


def _write_gz(path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def _rec(doc: str, query: str, title: str = "Topic") -> str:
    return json.dumps({"_id": doc, "title": title, "text": f"Body of {doc}.", "query": query})


def test_pairs_from_a_gzipped_file(tmp_path) -> None:
    path = tmp_path / "train.jsonl.gz"
    _write_gz(path, [_rec("d1", "first?"), "", _rec("d1", "second?"), _rec("d2", "third?", title="")])
    pairs = read_pairs(path)
    assert [(p.query, p.positive_id, p.positive) for p in pairs] == [
        ("first?", "d1", "Topic Body of d1."),  # title joined to the body, as the BEIR corpus reader does
        ("second?", "d1", "Topic Body of d1."),
        ("third?", "d2", "Body of d2."),
    ]
    assert len({p.query_id for p in pairs}) == 3 and all(p.negatives == () for p in pairs)
    # Two queries of one passage in a batch: neither sees the shared passage as a negative; d2 stays one.
    mask = in_batch_mask(**id_keys(pairs))
    assert mask.tolist() == [[True, False, True], [False, True, True], [True, True, True]]


def test_plain_jsonl_relative_to_the_data_root(tmp_path) -> None:
    (tmp_path / "genq").mkdir()
    (tmp_path / "genq" / "train.jsonl").write_text(_rec("d1", "q?") + "\n", encoding="utf-8")
    assert read_pairs("genq/train.jsonl", root=tmp_path)[0].query == "q?"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (json.dumps({"_id": "d2", "title": "T", "text": "x"}), "query"),
        (json.dumps({"_id": "d2", "title": "T", "text": "x", "query": "  "}), "query"),
        (json.dumps({"_id": 7, "title": "T", "text": "x", "query": "q"}), "_id"),
        (json.dumps({"_id": "d2", "title": ["T"], "text": "x", "query": "q"}), "title"),
    ],
)
def test_bad_record_names_file_line_and_field(tmp_path, line: str, field: str) -> None:
    path = tmp_path / "train.jsonl.gz"
    _write_gz(path, [_rec("d1", "q?"), line])
    with pytest.raises(DataFormatError) as err:
        read_pairs(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, field)


def test_truncated_gzip_and_mined_negatives_are_clear_errors(tmp_path) -> None:
    path = tmp_path / "train.jsonl.gz"
    _write_gz(path, [_rec(f"d{i}", f"query {i}?") for i in range(2000)])
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataFormatError, match="gzip"):
        read_pairs(path)
    (tmp_path / "ok.jsonl").write_text(_rec("d1", "q?") + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="BEIR folder"):
        read_pairs(tmp_path / "ok.jsonl", negatives_file=tmp_path / "neg.jsonl", num_negatives=2)
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no training pairs"):
        read_pairs(tmp_path / "empty.jsonl")


def test_real_arguana_generated_queries(real_data) -> None:
    if not (real_data / GENQ).is_file():
        pytest.skip(f"{real_data / GENQ} not found")
    pairs = read_pairs(GENQ, root=real_data)
    # The shared data README: 25,844 distinct (passage, query) pairs over all 8,674 corpus documents.
    assert len(pairs) == 25844 and len({p.positive_id for p in pairs}) == 8674
    assert len({(p.positive_id, p.query) for p in pairs}) == 25844
