"""The embedding cache: hits for unchanged inputs, misses for any changed one, damaged entries recomputed,
nothing written on failure."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import TINY, FakeEncoder, tiny_task

from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.eval.retrieval import evaluate_retrieval
from embedlab.eval.shards import Encoding

# ---------------------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------------------


def no_temp_files(root) -> bool:
    return not list(root.rglob("*.tmp"))


def test_second_evaluation_hits_the_cache(tmp_path) -> None:
    data, enc = tiny_task()
    cache = EmbeddingCache(tmp_path / "cache")
    first = evaluate_retrieval(data, enc, settings=TINY, cache=cache)
    assert (cache.hits, cache.misses) == (0, 2)
    assert enc.calls == {"query": 1, "document": 1}
    second = evaluate_retrieval(data, enc, settings=TINY, cache=cache)
    assert (cache.hits, cache.misses) == (2, 2)
    assert enc.calls == {"query": 1, "document": 1}  # not encoded again
    assert second.rows == first.rows and second.run == first.run
    fresh = EmbeddingCache(tmp_path / "cache")  # a later process, same folder
    evaluate_retrieval(data, enc, settings=TINY, cache=fresh)
    assert (fresh.hits, fresh.misses, enc.calls["document"]) == (2, 0, 1)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2
    assert no_temp_files(tmp_path / "cache")


def test_changed_text_prompt_or_model_misses(tmp_path) -> None:
    cache, enc = EmbeddingCache(tmp_path), FakeEncoder(dim=4)
    texts = ["alpha", "beta", "gamma"]

    def encode(texts: list[str]) -> np.ndarray:
        return encode_cached(enc, texts, kind="document", cache=cache, batch_size=8)

    base = encode(texts)
    np.testing.assert_array_equal(encode(texts), base)
    assert (cache.hits, cache.misses, enc.calls["document"]) == (1, 1, 1)
    encode(["alpha", "beta", "gamma!"])  # one text changed
    assert (cache.hits, cache.misses, enc.calls["document"]) == (1, 2, 2)
    encode(["beta", "alpha", "gamma"])  # order matters (rows follow texts)
    assert (cache.hits, cache.misses, enc.calls["document"]) == (1, 3, 3)
    enc.document_prompt = "passage: "
    encode(texts)
    assert (cache.hits, cache.misses, enc.calls["document"]) == (1, 4, 4)
    enc._fingerprint = "fake-v2"  # e.g. after a training step
    encode(texts)
    assert (cache.hits, cache.misses, enc.calls["document"]) == (1, 5, 5)
    encode(texts)  # and that entry is now cached in turn
    assert (cache.hits, cache.misses, enc.calls["document"]) == (2, 5, 5)
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("damage", ["wrong_rows", "cut_short", "empty", "not_npy", "one_dim"])
def test_damaged_or_foreign_entry_is_recomputed(tmp_path, damage: str) -> None:
    cache, enc = EmbeddingCache(tmp_path), FakeEncoder(dim=4)
    texts = ["one", "two", "three", "four", "five"]
    expected = enc.encode_documents(texts)
    key = cache.key(enc.fingerprint(), texts, enc.document_prompt)
    path = cache.path(key)
    path.parent.mkdir(parents=True)
    if damage == "wrong_rows":
        np.save(path, np.zeros((4, 4), np.float32))
    elif damage == "one_dim":
        np.save(path, np.zeros(5, np.float32))
    elif damage == "cut_short":
        np.save(path, expected)
        path.write_bytes(path.read_bytes()[:-12])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"this is not an npy file at all\n" * 4)
    calls = enc.calls["document"]
    got = encode_cached(enc, texts, kind="document", cache=cache, batch_size=8)
    np.testing.assert_array_equal(got, expected)
    assert (cache.hits, cache.misses, enc.calls["document"]) == (0, 1, calls + 1)
    np.testing.assert_array_equal(np.load(path), expected)  # repaired on disk
    assert no_temp_files(tmp_path)


def test_failed_compute_writes_nothing(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    key = cache.key("model", ["a", "b"], "")

    def boom(rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get_or_encode(key, 2, lambda: Encoding(boom), describe={"x": 1})
    assert not cache.path(key).exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    # a later successful compute stores the entry normally
    cache.get_or_encode(key, 2, lambda: Encoding(lambda rows: np.ones((len(rows), 3))))
    np.testing.assert_array_equal(np.load(cache.path(key)), np.ones((2, 3), np.float32))
    assert no_temp_files(tmp_path)


def test_encoders_sharing_a_backbone_encode_the_texts_once(tmp_path, tok, monkeypatch) -> None:
    """The shipped student and the same student with a fitted projection: one backbone pass, and each gets the
    vectors its own `encode` gives (the demo's "as shipped" row costs no corpus pass)."""
    import copy

    from torch import nn

    from tests.tiny import TEXTS, tiny_encoder

    headed = tiny_encoder(tok, projection=16)
    shipped = copy.deepcopy(headed)
    shipped.projection = None
    assert headed.fingerprint(head=False) == shipped.fingerprint(head=False)
    assert headed.fingerprint() != shipped.fingerprint()
    passes = []
    encode = type(headed).encode
    monkeypatch.setattr(
        type(headed), "encode", lambda self, texts, **kw: passes.append(len(texts)) or encode(self, texts, **kw)
    )
    cache = EmbeddingCache(tmp_path)
    encode_cached(shipped, TEXTS[:5], kind="document", cache=cache, batch_size=4)  # head-less, alone: no features
    assert len(list(tmp_path.rglob("*.npy"))) == 1 and passes == [5]
    passes.clear()
    for encoder in (headed, shipped):
        got = encode_cached(encoder, TEXTS, kind="document", cache=cache, batch_size=4)
        np.testing.assert_allclose(got, encode(encoder, TEXTS, batch_size=4), atol=1e-6)
    assert passes == [len(TEXTS)]  # the head-less twin reused the headed encoder's features
    nn.init.zeros_(headed.projection.weight)  # a changed head: new vectors, still no new backbone pass
    got = encode_cached(headed, TEXTS, kind="document", cache=cache, batch_size=4)
    np.testing.assert_allclose(got, encode(headed, TEXTS, batch_size=4), atol=1e-6)
    assert passes == [len(TEXTS)]
