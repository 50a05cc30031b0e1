"""Training data: readers, the length-grouped one-source batch sampler, the collator and the data module."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch
from omegaconf import OmegaConf

from embedlab.data.batching import LengthGroupedBatchSampler
from embedlab.data.collate import Collator
from embedlab.data.training import PairExample, ScoredExample, TextExample, read_pairs, read_scored, read_texts
from embedlab.errors import ConfigError, DataFormatError
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.training.prepare import read_examples


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from embedlab.hub import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))


def _write_jsonl(path, records) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")


# ------------------------------------------------------------------------------------------------ readers
def test_read_texts_real_sources(real_data) -> None:
    corpus = read_texts({"name": "sf", "type": "beir_corpus", "path": str(real_data / "scifact"), "limit": 50})
    assert len(corpus) == 50 and corpus[0].id.startswith("sf:") and corpus[0].text.strip()
    queries = read_texts({"name": "q", "type": "beir_queries", "path": str(real_data / "scifact"), "split": "train"})
    assert len(queries) == 809 and len({q.id for q in queries}) == 809
    sts = read_texts({"name": "sts", "type": "sts_sentences", "path": str(real_data / "stsb" / "stsb.tsv")})
    assert len(sts) > 5749 and len({s.text for s in sts}) == len(sts)  # unique sentences of 5,749 pairs


def test_read_texts_jsonl(tmp_path, caplog) -> None:
    path = tmp_path / "t.jsonl"
    _write_jsonl(path, [{"id": "a", "body": "first"}, {"body": "second"}, {"id": "c", "body": "   "}])
    texts = read_texts({"name": "j", "type": "jsonl", "path": str(path), "text_field": "body"})
    assert texts == [TextExample("j:a", "first"), TextExample("j:2", "second")]  # blank text dropped
    assert "text source 'j': 1 blank texts skipped" in caplog.text  # and counted
    _write_jsonl(path, [{"id": "a", "text": "ok"}, {"id": "b", "text": 3}])
    with pytest.raises(DataFormatError) as err:
        read_texts({"name": "j", "type": "jsonl", "path": str(path)})
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, "text") and "t.jsonl" in str(err.value)
    with pytest.raises(ConfigError):
        read_texts({"name": "j", "type": "csv", "path": str(path)})


def test_text_source_limit_keeps_the_first_n_and_zero_leaves_the_source_out(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    _write_jsonl(path, [{"id": i, "text": f"text {i}"} for i in "abc"])
    source = {"name": "j", "type": "jsonl", "path": str(path)}
    assert [t.id for t in read_texts({**source, "limit": 2})] == ["j:a", "j:b"]
    assert read_texts({**source, "limit": 0}) == [] and len(read_texts({**source, "limit": None})) == 3
    with pytest.raises(ConfigError, match="text source 'j': limit must be null"):
        read_texts({**source, "limit": -1})
    data = OmegaConf.create({"kind": "text", "sources": [{**source, "limit": 0}, {**source, "name": "k", "limit": 1}]})
    assert read_examples(data, None) == {"k": [TextExample("k:a", "text a")]}  # a run without source j


def test_read_pairs_real_and_negatives(real_data, tmp_path) -> None:
    pairs = read_pairs(real_data / "scifact", "train")
    assert len(pairs) == 919 and all(p.negatives == () for p in pairs)
    qids = list(dict.fromkeys(p.query_id for p in pairs))[:3]
    docs = [p.positive_id for p in pairs[-4:]]
    negs = tmp_path / "negs.jsonl"
    _write_jsonl(
        negs,
        [{"query_id": q, "negative_ids": docs[:3]} for q in qids[:2]]
        + [{"query_id": qids[2], "negative_ids": docs[:1]}],
    )  # too few: query skipped
    mined = read_pairs(real_data / "scifact", "train", negatives_file=negs, num_negatives=2)
    assert {p.query_id for p in mined} == set(qids[:2])
    assert all(p.negative_ids == tuple(docs[:2]) and len(p.negatives) == 2 for p in mined)
    _write_jsonl(negs, [{"query_id": qids[0], "negative_ids": ["no-such-doc"]}])
    with pytest.raises(DataFormatError, match=r"line 1.*negative_ids"):
        read_pairs(real_data / "scifact", "train", negatives_file=negs, num_negatives=1)


def test_read_scored(tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    rec = {
        "query_id": 1,
        "query": "q",
        "candidate_ids": ["a", "b", "c"],
        "candidates": ["A", "B", "C"],
        "scores": [3, 2, 1],
    }
    _write_jsonl(
        path, [rec, {**rec, "query_id": "2", "candidate_ids": ["a", "b"], "candidates": ["A", "B"], "scores": [1, 0]}]
    )
    assert read_scored(path)[0] == ScoredExample("1", "q", ("a", "b", "c"), ("A", "B", "C"), (3.0, 2.0, 1.0))
    assert [e.query_id for e in read_scored(path, num_candidates=3)] == ["1"]
    _write_jsonl(path, [rec, {**rec, "scores": [1.0, 2.0]}])
    with pytest.raises(DataFormatError, match="line 2") as err:
        read_scored(path)
    assert err.value.line == 2


# ------------------------------------------------------------------------------------------------ sampler
def _sampler(**kw) -> LengthGroupedBatchSampler:
    rng = np.random.default_rng(7)
    lengths, sources = rng.integers(1, 500, 1000), rng.integers(0, 3, 1000)
    return LengthGroupedBatchSampler(lengths, 8, **{"sources": sources, "megabatch_factor": 10, **kw})


@pytest.mark.parametrize("group", [True, False])
def test_sampler_covers_each_index_once_in_single_source_batches(group: bool) -> None:
    s = _sampler(group_by_length=group)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000)) and len(batches) == len(s)
        assert all(len({int(s.sources[i]) for i in b}) == 1 for b in batches)
        assert all(len(b) <= 8 for b in batches)


def test_sampler_groups_lengths() -> None:
    def spread(s: LengthGroupedBatchSampler) -> float:
        return float(np.mean([np.ptp(s.lengths[b]) for b in s]))

    grouped, shuffled = spread(_sampler()), spread(_sampler(group_by_length=False))
    assert grouped < 0.2 * shuffled, (grouped, shuffled)


def test_sampler_deterministic_per_seed_and_epoch() -> None:
    a, b = _sampler(seed=3), _sampler(seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    other = _sampler(seed=4)
    other.set_epoch(1)
    assert list(a) == list(b) != list(other)
    # Lightning reaches the sampler through `dataloader.batch_sampler.sampler`.
    _set_sampler_epoch(torch.utils.data.DataLoader(range(1000), batch_sampler=a), 5)
    assert a.epoch == 5


def test_sampler_len_exact_with_and_without_drop_last() -> None:
    sources = [0] * 10 + [1] * 7
    keep = LengthGroupedBatchSampler([5] * 17, 4, sources=sources, megabatch_factor=1)
    drop = LengthGroupedBatchSampler([5] * 17, 4, sources=sources, megabatch_factor=1, drop_last=True)
    assert len(keep) == len(list(keep)) == 3 + 2
    assert len(drop) == len(list(drop)) == 2 + 1 and all(len(b) == 4 for b in drop)
    assert sum(len(b) for b in drop) == 12
    with pytest.raises(ConfigError):
        LengthGroupedBatchSampler([1, 2], 2, sources=[0])


# ------------------------------------------------------------------------------------------------ collator
def _pair(qid: str, pos: str, negs: tuple[str, ...] = ()) -> PairExample:
    return PairExample(qid, f"question {qid}", pos, f"document {pos}", negs, tuple(f"document {n}" for n in negs))


def test_collate_texts_dynamic_padding_and_truncation(tokenizer) -> None:
    collate = Collator(tokenizer, max_length=16, query_prompt="query: ")
    batch = collate([(4, TextExample("a", "short")), (9, TextExample("b", "a slightly longer text here"))])
    ids, mask = batch["query"]["input_ids"], batch["query"]["attention_mask"]
    assert set(batch["query"]) == {"input_ids", "attention_mask"} and batch["texts"][0] == "short"
    assert ids.shape == (2, int(mask.sum(1).max())) and ids.shape[1] < 16  # padded to the batch max only
    assert batch["index"].tolist() == [4, 9] and batch["index"].dtype == torch.long
    assert "query" not in tokenizer.decode(ids[0], skip_special_tokens=True)  # raw text: no prompt
    long = collate([(0, TextExample("c", "word " * 100))])["query"]["input_ids"]
    assert long.shape == (1, 16) and long[0, -1].item() == tokenizer.sep_token_id


def test_collate_pairs_prompts_and_pool_order(tokenizer) -> None:
    collate = Collator(tokenizer, 32, query_prompt="query: ", document_prompt="passage: ")
    batch = collate([(0, _pair("q1", "d1", ("n1", "n2"))), (1, _pair("q2", "d2", ("n3", "n4")))])
    assert batch["num_negatives"] == 2 and batch["texts"] == ["question q1", "question q2"]
    assert batch["query"]["input_ids"].shape[0] == 2 and batch["documents"]["input_ids"].shape[0] == 6
    decode = [tokenizer.decode(r, skip_special_tokens=True).replace(" ", "") for r in batch["documents"]["input_ids"]]
    assert decode == [f"passage:document{d}" for d in ("d1", "d2", "n1", "n2", "n3", "n4")]
    q0 = tokenizer.decode(batch["query"]["input_ids"][0], skip_special_tokens=True).replace(" ", "")
    assert q0 == "query:questionq1"
    assert batch["document_mask"].shape == (2, 6) and batch["document_mask"].all()


def test_document_mask_hand_checked(tokenizer) -> None:
    # Pool: d1 d1 d2 | x0 d2 x2. ex1 shares ex0's positive and has ex2's positive as a hard negative; ex2 shares
    # ex0's query, so d2 is relevant to q1 too (masked for rows 0 and 2 wherever it appears).
    examples = [_pair("q1", "d1", ("x0",)), _pair("q2", "d1", ("d2",)), _pair("q1", "d2", ("x2",))]
    mask = Collator(tokenizer, 16)(list(enumerate(examples)))["document_mask"]
    expected = [[1, 0, 0, 1, 0, 1], [0, 1, 1, 1, 1, 1], [0, 0, 1, 1, 0, 1]]
    assert mask.dtype == torch.bool and mask.int().tolist() == expected


def test_collate_scored_and_errors(tokenizer) -> None:
    collate = Collator(tokenizer, 16, document_prompt="passage: ")
    ex = [ScoredExample(f"q{i}", f"query {i}", ("a", "b", "c"), ("A", "B", "C"), (i, 0.5, -1.0)) for i in range(2)]
    batch = collate(list(enumerate(ex)))
    assert batch["num_candidates"] == 3 and batch["candidates"]["input_ids"].shape[0] == 6
    assert batch["teacher_scores"].dtype == torch.float32
    assert batch["teacher_scores"].tolist() == [[0.0, 0.5, -1.0], [1.0, 0.5, -1.0]]
    with pytest.raises(ConfigError, match="hard negatives"):
        collate([(0, _pair("q1", "d1", ("n1",))), (1, _pair("q2", "d2"))])
    with pytest.raises(ConfigError, match="candidates"):
        collate([(0, ex[0]), (1, ScoredExample("q", "q", ("a", "b"), ("A", "B"), (1.0, 0.0)))])
    with pytest.raises(ConfigError, match="mixes"):
        collate([(0, ex[0]), (1, TextExample("t", "text"))])
    enc = SimpleNamespace(tokenizer=tokenizer, max_length=7, query_prompt="q: ", document_prompt="d: ")
    defaults = {"prompt_lengths": False, "document_max_length": 7, "text_prompt": ""}  # no include_prompt: pooled
    assert vars(Collator.for_encoder(enc)) == {**vars(enc), **defaults}


# ------------------------------------------------------------------------------------------------ data module
def _texts(prefix: str, n: int) -> list[TextExample]:
    return [TextExample(f"{prefix}:{i}", f"{prefix} " + "word " * (i % 17)) for i in range(n)]


def test_datamodule_heldout_and_index(tokenizer) -> None:
    data = {"a": _texts("a", 40), "b": _texts("b", 25)}
    dm = EmbeddingDataModule(data, Collator(tokenizer, 32), batch_size=4, seed=1, heldout=10)
    assert dm.all_examples == data["a"] + data["b"] and len(dm.heldout_examples) == 10
    assert set(dm.heldout_rows).isdisjoint(dm.train_rows) and len(dm.train_rows) == 55
    again = EmbeddingDataModule(data, Collator(tokenizer, 32), batch_size=4, seed=1, heldout=10)
    assert again.heldout_rows == dm.heldout_rows
    assert EmbeddingDataModule(data, Collator(tokenizer, 32), seed=2, heldout=10).heldout_rows != dm.heldout_rows
    seen = []
    for batch in dm.train_dataloader():
        rows = batch["index"].tolist()
        assert batch["texts"] == [dm.all_examples[r].text for r in rows]
        assert len({dm.all_examples[r].id.split(":")[0] for r in rows}) == 1  # one source per batch
        seen += rows
    assert sorted(seen) == dm.train_rows
    with pytest.raises(ConfigError, match="mix"):
        EmbeddingDataModule({"t": _texts("t", 3), "p": [_pair("q", "d")]}, Collator(tokenizer, 8))
    with pytest.raises(ConfigError):
        EmbeddingDataModule(_texts("t", 3), Collator(tokenizer, 8), heldout=3)


def test_real_scifact_pairs_batched(real_data, tokenizer) -> None:
    pairs = read_pairs(real_data / "scifact", "train")
    collate = Collator(tokenizer, 64, query_prompt="query: ", document_prompt="passage: ")
    dm = EmbeddingDataModule(pairs, collate, batch_size=32, seed=0)
    total = 0
    for batch in dm.train_dataloader():
        b = batch["query"]["input_ids"].shape[0]
        assert batch["documents"]["input_ids"].shape[0] == b and batch["documents"]["input_ids"].shape[1] <= 64
        assert batch["document_mask"].shape == (b, b) and batch["document_mask"].diagonal().all()
        assert batch["texts"] == [pairs[i].query for i in batch["index"].tolist()]
        total += b
    assert total == 919 and len(dm.train_dataloader()) == 29
