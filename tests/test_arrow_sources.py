"""Arrow-backed training sources (embedlab/data/records.py, rows.py, arrow.py): located errors and counted skips,
the content-fingerprinted cache (never half written), the formats people already have (FlagEmbedding JSONL,
sentence-transformers columns as Parquet/CSV) on files made from the staged data, and the same-label mask."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from embedlab.data.arrow import open_source
from embedlab.data.beir import load_beir
from embedlab.data.collate import Collator
from embedlab.data.rows import RowSpec
from embedlab.data.sts import load_sts
from embedlab.data.training import PairExample, ScoredExample, TextExample
from embedlab.errors import ConfigError, DataFormatError


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def pairs_file(tmp_path: Path, bad: dict[int, str] | None = None, n: int = 20) -> Path:
    records = [{"query": f"question {i}", "positive": f"answer {i}", "negatives": [f"wrong {i}"]} for i in range(n)]
    for line, raw in (bad or {}).items():
        records[line - 1] = raw
    return write_jsonl(tmp_path / "pairs.jsonl", records)


def test_a_malformed_row_is_located_by_file_line_and_field(tmp_path) -> None:
    cache = tmp_path / "cache"
    path = pairs_file(tmp_path, {4: json.dumps({"query": "q", "positive": 7})})
    with pytest.raises(DataFormatError) as e:
        open_source(RowSpec("p", "pairs"), str(path), cache=cache)
    assert (e.value.path, e.value.line, e.value.field) == (path, 4, "positive")
    path = pairs_file(tmp_path, {6: '{"query": "q", "positive": '})
    with pytest.raises(DataFormatError, match="line 6: invalid JSON"):
        open_source(RowSpec("p", "pairs"), str(path), cache=cache)
    path = pairs_file(tmp_path, {2: json.dumps({"query": "q", "positive": "p", "negatives": []})})
    with pytest.raises(DataFormatError) as e:
        open_source(RowSpec("p", "pairs_negatives", num_negatives=1), str(path), cache=cache)
    assert (e.value.line, e.value.field) == (2, "negatives")
    # nothing was cached, not even in part: the failed builds left no folder behind
    assert not cache.exists() or not any(cache.iterdir())


def test_on_bad_row_skip_counts_and_logs_the_skipped_rows(tmp_path, caplog) -> None:
    bad = {3: "[1, 2]", 7: json.dumps({"query": " ", "positive": "p"}), 8: '{"query": '}
    path = pairs_file(tmp_path, bad)
    with caplog.at_level(logging.WARNING):
        source = open_source(RowSpec("p", "pairs"), str(path), on_bad_row="skip", cache=tmp_path / "cache")
    assert len(source) == 17 and source.meta["bad_rows"] == 3
    assert "3 malformed rows skipped" in caplog.text
    assert f"{path}, line 7: field 'query'" in caplog.text and f"{path}, line 8" in caplog.text
    queries = [e.query for e in source.examples(range(len(source)))]
    assert queries == [f"question {i}" for i in range(20) if i + 1 not in bad]


def test_the_cache_is_keyed_by_content_and_reused(tmp_path) -> None:
    cache = tmp_path / "cache"
    path = pairs_file(tmp_path)
    first = open_source(RowSpec("p", "pairs"), str(path), cache=cache)
    stamp = (first.folder / "data.arrow").stat().st_mtime_ns
    again = open_source(RowSpec("p", "pairs"), str(path), cache=cache)
    assert again.folder == first.folder and (again.folder / "data.arrow").stat().st_mtime_ns == stamp
    pairs_file(tmp_path, n=21)  # new content: a new entry
    changed = open_source(RowSpec("p", "pairs"), str(path), cache=cache)
    assert changed.folder != first.folder and len(changed) == 21
    other = open_source(RowSpec("p", "pairs_negatives", num_negatives=1), str(path), cache=cache)  # other reader
    assert other.folder not in (first.folder, changed.folder)
    assert other.examples([3])[0].negatives == ("wrong 3",)
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []  # no temporary leftovers


def test_a_build_that_dies_half_way_leaves_no_cache_entry(tmp_path) -> None:
    rows = [{"query": f"q{i}", "positive": f"p{i}"} for i in range(5000)]  # several writer batches of 1000
    rows[4321] = {"query": "q", "positive": ["not", "a", "string"]}
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    with pytest.raises(DataFormatError, match="line 4322"):
        open_source(RowSpec("p", "pairs"), str(path), cache=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_folders_of_shards_read_in_name_order(tmp_path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    write_jsonl(folder / "part-0001.jsonl", [{"id": f"b{i}", "text": f"second {i}"} for i in range(3)])
    with gzip.open(folder / "part-0000.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps({"id": f"a{i}", "text": f"first {i}"}) + "\n" for i in range(2)))
    source = open_source(RowSpec("t", "texts"), str(folder), cache=tmp_path / "cache")
    assert source.examples(range(5)) == [
        TextExample("t:a0", "first 0"), TextExample("t:a1", "first 1"),
        *(TextExample(f"t:b{i}", f"second {i}") for i in range(3)),
    ]  # fmt: skip
    assert source.lengths([0, 4]).tolist() == [len("first 0"), len("second 2")]


def test_flagembedding_jsonl_made_from_scifact(real_data, tmp_path) -> None:
    """FlagEmbedding's format: a record per train claim, its cited abstracts as pos, three other abstracts as neg,
    a prompt, and scores (for the scored reading)."""
    data = load_beir(real_data / "scifact", split="train")
    docs = list(data.corpus)
    records = []
    for k, (qid, rel) in enumerate(list(data.qrels.items())[:50]):
        pos = [data.corpus[d] for d in rel]
        neg = [data.corpus[docs[(k * 7 + j) % len(docs)]] for j in range(3)]
        records.append({"query": data.queries[qid], "pos": pos, "neg": neg, "prompt": "Claim: ",
                        "pos_scores": [1.0] * len(pos), "neg_scores": [0.5, 0.25, 0.1]})  # fmt: skip
    path = write_jsonl(tmp_path / "flag.jsonl", records)
    cache = tmp_path / "cache"
    pairs = open_source(RowSpec("flag", "pairs_negatives", "flag", num_negatives=2), str(path), cache=cache)
    assert len(pairs) == sum(len(r["pos"]) for r in records)  # a row per positive
    first = pairs.examples([0])[0]
    assert isinstance(first, PairExample)
    assert first.query == "Claim: " + records[0]["query"] and first.positive == records[0]["pos"][0]
    assert first.negatives == tuple(records[0]["neg"][:2])
    scored = open_source(RowSpec("flag", "scored", "flag", num_negatives=3), str(path), cache=cache)
    lists = scored.examples([0, 1])
    assert isinstance(lists[0], ScoredExample) and len(scored) == 50
    assert lists[1].candidates == (records[1]["pos"][0], *records[1]["neg"])
    assert lists[1].scores == (1.0, 0.5, 0.25, 0.1)
    records[5]["neg_scores"] = [0.5]  # 1 score for 3 negatives
    write_jsonl(path, records)
    with pytest.raises(DataFormatError, match="line 6: field 'neg_scores'"):
        open_source(RowSpec("flag", "scored", "flag", num_negatives=3), str(path), cache=cache)


def test_sentence_transformers_columns_from_stsb_as_parquet_and_csv(real_data, tmp_path) -> None:
    """(sentence1, sentence2, score) as Parquet (STS pairs ≥ 4 kept), and (anchor, positive, negative_1, negative_2)
    as CSV, both made from the STSb train split."""
    sts = load_sts(real_data / "stsb" / "stsb.tsv", split="train")
    table = pa.table({"sentence1": sts.sentences1, "sentence2": sts.sentences2, "score": sts.scores})
    pq.write_table(table, tmp_path / "stsb.parquet", row_group_size=1000)
    cache = tmp_path / "cache"
    source = open_source(RowSpec("stsb", "sts", "st", min_score=4.0), str(tmp_path / "stsb.parquet"), cache=cache)
    kept = [(a, b) for a, b, s in zip(sts.sentences1, sts.sentences2, sts.scores, strict=True) if s >= 4.0]
    assert len(source) == len(kept) and 0 < len(kept) < len(sts)
    last = source.examples([len(source) - 1])[0]
    assert (last.query, last.positive) == kept[-1]

    import csv

    with open(tmp_path / "triplets.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["anchor", "positive", "negative_1", "negative_2"])
        for i in range(100):
            w.writerow([sts.sentences1[i], sts.sentences2[i], sts.sentences2[i + 1], sts.sentences2[i + 2]])
        w.writerow([sts.sentences1[0], "", "x", "y"])  # line 102: an empty positive
    spec = RowSpec("trip", "pairs_negatives", "st", num_negatives=2)
    with pytest.raises(DataFormatError, match="line 102: field 'positive'"):
        open_source(spec, str(tmp_path / "triplets.csv"), cache=cache)
    source = open_source(spec, str(tmp_path / "triplets.csv"), on_bad_row="skip", cache=cache)
    assert len(source) == 100 and source.meta["bad_rows"] == 1
    e = source.examples([10])[0]
    assert (e.query, e.positive, e.negatives) == (sts.sentences1[10], sts.sentences2[10], tuple(sts.sentences2[11:13]))


def test_same_label_rows_are_never_each_others_negatives(tmp_path, tok) -> None:
    rows = [{"text": f"text {i}", "label": ["sport", "science", "music"][i % 3]} for i in range(9)]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    classes = open_source(RowSpec("cls", "classification"), str(path), cache=tmp_path / "cache")
    assert classes.examples([0])[0].positive == "sport" and classes.examples([0])[0].label == "sport"
    # clustering: another text of the cluster is the positive, so only the label mask keeps the cluster's other
    # texts (distinct documents) from being negatives
    clusters = open_source(RowSpec("clu", "clustering"), str(path), cache=tmp_path / "cache")
    examples = clusters.examples(range(9))
    assert [e.positive for e in examples] == [f"text {(i + 3) % 9}" for i in range(9)]  # next in its cluster
    assert sorted(e.positive_id for e in examples) == sorted(e.query_id for e in examples)  # each text once
    batch = Collator(tok, 16)(list(enumerate(examples[:6])))
    labels = [e.label for e in examples[:6]]
    expected = torch.tensor([[i == j or labels[i] != labels[j] for j in range(6)] for i in range(6)])
    assert torch.equal(batch["document_mask"], expected)
    # without labels the same pairs are all each other's negatives: the mask above is the labels' doing
    unlabelled = [PairExample(e.query_id, e.query, e.positive_id, e.positive) for e in examples[:6]]
    assert bool(Collator(tok, 16)(list(enumerate(unlabelled)))["document_mask"].all())


def test_unknown_kind_or_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="kind must be one of"):
        RowSpec("x", "triples")
    with pytest.raises(ConfigError, match="format must be one of"):
        RowSpec("x", "pairs", "xml")


def test_generated_queries_stream_into_the_pairs_todays_reader_gives(real_data, tmp_path) -> None:
    from embedlab.data.training import read_query_pairs

    path = real_data / "arguana" / "generated-queries" / "train.jsonl.gz"
    source = open_source(RowSpec("g", "pairs", "genq"), str(path), cache=tmp_path / "cache")
    old = read_query_pairs(path)
    assert len(source) == len(old) == 25844
    picks = [0, 1, 777, len(old) - 1]
    for new, before in zip(source.examples(picks), [old[i] for i in picks], strict=True):
        assert (new.query, new.positive) == (before.query, before.positive)
        assert (new.query_id, new.positive_id) == (f"g:{before.query_id}", f"g:{before.positive_id}")
