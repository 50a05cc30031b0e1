"""Sharded encoding (embedlab/eval/shards.py through the embedding cache): shards of whole length-sorted batches give
a one-pass encoding's vectors bit for bit; a killed encoding resumes from its finished shards, in one process and
in two gloo ranks (none encoding another's shard); reads by row, blocked search over shards, and the LEAF teacher
table looked up across per-source entries without concatenating them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny import TEXTS, tiny_encoder

from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.search import search_blocked, search_inner_product
from embedlab.eval.shards import RowStack, plan_shards
from embedlab.lit.teacher import TeacherTable

# 40 texts of many lengths (ties included), so the length order differs from the input order
CORPUS = [" ".join(TEXTS[i % 16 : i % 16 + 1 + i % 5]) + f" #{i % 3}" for i in range(40)]
BATCH, SHARD_ROWS = 4, 6  # 5 shards of 2 batches: 6 rows rounded up to whole batches (6 would change vectors)


def sharded_cache(root: Path) -> EmbeddingCache:
    return EmbeddingCache(root, shard_rows=SHARD_ROWS)


def counting(encoder, fail_after: int | None = None, before_kill=lambda: None) -> list[list[str]]:
    """Record each backbone pass's texts on `encoder`; raise (a kill) once `fail_after` passes have run."""
    calls: list[list[str]] = []
    encode = encoder.encode

    def wrapped(texts, **kwargs):
        if fail_after is not None and len(calls) >= fail_after:
            before_kill()
            raise RuntimeError("killed")
        calls.append(list(texts))
        return encode(texts, **kwargs)

    encoder.encode = wrapped
    return calls


def test_plan_cuts_whole_batches_independent_of_ranks() -> None:
    assert plan_shards(40, 4, 8).bounds == (0, 8, 16, 24, 32, 40)
    assert plan_shards(41, 4, 6).bounds == (0, 8, 16, 24, 32, 40, 41)  # 6 rows → 2 whole batches
    assert plan_shards(300, 32, 16_384).bounds == (0, 300)  # small: one shard
    assert plan_shards(5183, 64, 16_384).n_shards == 8  # at least 8 shards of ≥ 512 rows when it is large enough
    assert plan_shards(0, 4, 8).n_shards == 1


def test_sharded_encoding_equals_one_pass_bitwise(tok, tmp_path) -> None:
    enc = tiny_encoder(tok, projection=None, max_batch_tokens=40)  # budgets split batches inside shards too
    expected = enc.encode(CORPUS, batch_size=BATCH)
    cache = sharded_cache(tmp_path)
    got = encode_cached(enc, CORPUS, kind="document", cache=cache, batch_size=BATCH)
    assert isinstance(got, RowStack) and got.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(got), expected)
    (entry,) = [p for p in tmp_path.rglob("manifest.json")]
    manifest = json.loads(entry.read_text())
    assert [s["rows"] for s in manifest["shards"]] == [[0, 8], [8, 16], [16, 24], [24, 32], [32, 40]]
    assert (manifest["n_rows"], manifest["dim"], manifest["describe"]["n_texts"]) == (40, 32, 40)
    order = np.load(entry.parent / "order.npy")
    lengths = enc.token_lengths(CORPUS)
    assert (np.diff(lengths[order]) <= 0).all() and not (order == np.arange(40)).all()
    first = np.load(entry.parent / manifest["shards"][0]["file"])
    np.testing.assert_array_equal(first, expected[order[:8]])  # stored in the length order
    # reads by row touch the shards holding them: index arrays, slices, negatives, masks, columns
    idx = np.array([39, 0, 17, 17, 5])
    np.testing.assert_array_equal(got[idx], expected[idx])
    np.testing.assert_array_equal(got[3:30:7], expected[3:30:7])
    np.testing.assert_array_equal(got[-1], expected[-1])
    np.testing.assert_array_equal(got[np.arange(40) % 3 == 0], expected[::3])
    np.testing.assert_array_equal(got[[2, 9], :5], expected[[2, 9], :5])
    again = sharded_cache(tmp_path)
    np.testing.assert_array_equal(
        np.asarray(encode_cached(enc, CORPUS, kind="document", cache=again, batch_size=4)), expected
    )
    assert (again.hits, again.misses) == (1, 0)


def test_killed_encoding_resumes_from_its_finished_shards(tok, tmp_path) -> None:
    enc = tiny_encoder(tok, projection=None)
    calls = counting(enc, fail_after=2)
    cache = sharded_cache(tmp_path / "cache")
    with pytest.raises(RuntimeError, match="killed"):
        encode_cached(enc, CORPUS, kind="text", cache=cache, batch_size=BATCH)
    assert len(calls) == 2 and not list(tmp_path.rglob("manifest.json"))  # two shards done, nothing published
    assert len(list(tmp_path.rglob("shard-*.npy"))) == 2 and not list(tmp_path.rglob("*.tmp"))
    done = {t for c in calls for t in c}
    del enc.encode  # the relaunch: no kill
    calls = counting(enc)
    got = encode_cached(enc, CORPUS, kind="text", cache=sharded_cache(tmp_path / "cache"), batch_size=BATCH)
    assert len(calls) == 3 and not done & {t for c in calls for t in c}  # only the three missing shards
    fresh = tiny_encoder(tok, projection=None)
    whole = encode_cached(fresh, CORPUS, kind="text", cache=sharded_cache(tmp_path / "fresh"), batch_size=BATCH)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(whole))


def test_damaged_shard_of_a_published_entry_is_encoded_again_alone(tok, tmp_path) -> None:
    enc = tiny_encoder(tok, projection=None)
    expected = np.asarray(encode_cached(enc, CORPUS, kind="text", cache=sharded_cache(tmp_path), batch_size=BATCH))
    shard = sorted(tmp_path.rglob("shard-*.npy"))[3]
    shard.write_bytes(shard.read_bytes()[:-20])  # cut short
    calls = counting(enc)
    cache = sharded_cache(tmp_path)
    got = encode_cached(enc, CORPUS, kind="text", cache=cache, batch_size=BATCH)
    assert len(calls) == 1 and len(calls[0]) == 8 and (cache.hits, cache.misses) == (0, 1)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_head_over_sharded_features_equals_encode(tok, tmp_path) -> None:
    """A projection head runs over the cached sharded features in apply_head's blocks: encode's vectors exactly."""
    headed = tiny_encoder(tok, projection=16)
    got = encode_cached(headed, CORPUS, kind="document", cache=sharded_cache(tmp_path), batch_size=BATCH)
    np.testing.assert_array_equal(np.asarray(got), headed.encode(CORPUS, batch_size=BATCH))
    assert len(list(tmp_path.rglob("manifest.json"))) == 1  # the features are sharded; the 40 vectors one file


def test_blocked_search_walks_permuted_shards(tmp_path) -> None:
    """Tied small-integer vectors stored shuffled over uneven shards: the flat index's ids and scores, ties
    broken by the collection's row as there."""
    rng = np.random.default_rng(0)
    distinct = rng.integers(-2, 3, (30, 16)).astype(np.float32)
    docs = distinct[rng.integers(0, 30, 900)]
    queries = rng.integers(-2, 3, (25, 16)).astype(np.float32)
    order = rng.permutation(900)
    cuts = [0, 100, 350, 351, 700, 900]
    for a, b in itertools.pairwise(cuts):
        np.save(tmp_path / f"{a}.npy", docs[order[a:b]])
    parts = [np.load(tmp_path / f"{a}.npy", mmap_mode="r") for a in cuts[:-1]]
    stack = RowStack(parts, order)
    np.testing.assert_array_equal(np.asarray(stack), docs)
    flat = search_inner_product(queries, docs, 50, use_gpu=False)
    for block_rows in (64, 1000):
        blocked = search_blocked(queries, stack, 50, block_rows)
        np.testing.assert_array_equal(blocked[1], flat[1])
        np.testing.assert_array_equal(blocked[0], flat[0])


def test_teacher_table_looks_rows_up_across_sharded_sources(tok, tmp_path) -> None:
    teacher = tiny_encoder(tok, projection=None, seed=3)
    groups = [CORPUS[:30], CORPUS[30:], CORPUS[5:25]]
    table = TeacherTable.from_encoder(teacher, groups, sharded_cache(tmp_path), batch_size=BATCH)
    old = np.concatenate([teacher.encode(g, batch_size=BATCH) for g in groups])  # the concatenated table of before
    assert isinstance(table.embeddings, RowStack) and isinstance(table.embeddings.parts[0], RowStack)
    assert (len(table), table.dim) == (60, 32)
    rows = torch.tensor([59, 0, 29, 30, 39, 40, 12, 12])
    assert torch.equal(table.lookup(rows), torch.from_numpy(old[rows.numpy()]))


# ------------------------------------------------------------------------------------------------------- ranks
def _rank(rank: int, world: int, folder: Path, tok, fail_after: int | None, phase: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous-{phase}", rank=rank, world_size=world)
    enc = tiny_encoder(tok, projection=None, max_batch_tokens=40)
    record = folder / f"{phase}-calls{rank}.json"

    def before_kill() -> None:  # both ranks have stored their finished shards when either dies
        record.write_text(json.dumps(calls))
        dist.barrier()

    calls = counting(enc, fail_after, before_kill)
    try:
        cache = EmbeddingCache(folder / "cache", shard_rows=SHARD_ROWS).sharing_ranks()
        got = encode_cached(enc, CORPUS, kind="text", cache=cache, batch_size=BATCH)
        np.save(folder / f"{phase}-rank{rank}.npy", np.asarray(got))
        record.write_text(json.dumps(calls))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_share_the_shards_and_resume_after_a_kill(tok, tmp_path) -> None:
    """Rank r encodes shards r, r+2, …: killed after one shard each, the relaunch encodes the other three, no shard
    twice, and both ranks read the one-process vectors, bit for bit."""
    with pytest.raises(Exception, match="killed"):
        mp.spawn(_rank, args=(2, tmp_path, tok, 1, "killed"), nprocs=2)
    assert not list(tmp_path.rglob("manifest.json"))
    mp.spawn(_rank, args=(2, tmp_path, tok, None, "resumed"), nprocs=2)
    calls = {
        (phase, r): json.loads((tmp_path / f"{phase}-calls{r}.json").read_text())
        for phase in ("killed", "resumed")
        for r in (0, 1)
    }
    assert {k: len(v) for k, v in calls.items()} == {
        ("killed", 0): 1,
        ("killed", 1): 1,
        ("resumed", 0): 2,
        ("resumed", 1): 1,
    }
    encoded = [t for c in calls.values() for call in c for t in call]
    assert sorted(encoded) == sorted(CORPUS)  # every text once: no shard encoded twice, none left out
    one = tiny_encoder(tok, projection=None, max_batch_tokens=40).encode(CORPUS, batch_size=BATCH)
    for r in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"resumed-rank{r}.npy"), one)
