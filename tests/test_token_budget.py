"""Token budgets for frozen encoding: batches of at most N padded tokens (rows × padded width) as well as at most B
rows. By hand for the batch cutter; in `Encoder.encode`, the vectors must be bit for bit those of the rows-only
batches, in input order, while every batch really keeps to the budget. (GradCache's chunks: tests/test_gradcache.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import TEXTS, tiny_encoder
from transformers import AutoTokenizer

from embedlab.data import load_task
from embedlab.data.batching import budget_batches, width_keeping_batches
from embedlab.errors import ConfigError
from embedlab.hub import resolve_model
from embedlab.models import Encoder, runtime
from embedlab.models.encoder import DEFAULT_BATCH_TOKENS, EncoderConfig


def test_budget_batches_by_hand() -> None:
    # 9 is over the budget: alone. 5+5 → 10 > 8: apart. 4,3 → 2·4 = 8: together. 2,1 → 2·2.
    assert budget_batches([9, 5, 5, 4, 3, 2, 1], None, 8) == [(0, 1), (1, 2), (2, 3), (3, 5), (5, 7)]
    assert budget_batches([3, 3, 3, 3, 3], 2, 100) == [(0, 2), (2, 4), (4, 5)]  # the row cap binds
    assert budget_batches([3, 3, 3, 3, 3], 4, 9) == [(0, 3), (3, 5)]  # the token cap binds
    assert budget_batches([2, 9, 2], None, 10) == [(0, 1), (1, 2), (2, 3)]  # any order: the running longest counts
    assert budget_batches([1, 2, 3], None, None) == [(0, 3)] and budget_batches([], 4, 8) == []
    for rows, tokens in ((0, None), (None, 0)):
        with pytest.raises(ConfigError, match="max_rows" if rows == 0 else "max_tokens"):
            budget_batches([1], rows, tokens)


def test_width_keeping_batches_by_hand() -> None:
    # rows-only batches of 3: widths 9, 3, 1; the first one split in parts of 2 rows (2·9 ≤ 18 < 3·9).
    lengths = [9, 8, 8, 3, 2, 2, 1]
    assert width_keeping_batches(lengths, 3, 18) == [(0, 2, 9), (2, 3, 9), (3, 6, 3), (6, 7, 1)]
    assert width_keeping_batches(lengths, 3, None) == [(0, 3, 9), (3, 6, 3), (6, 7, 1)]
    assert width_keeping_batches(lengths, 3, 1) == [(i, i + 1, w) for i, w in enumerate([9, 9, 9, 3, 3, 3, 1])]


def mixed_texts() -> list[str]:
    """Short and long texts (up to the tiny encoders' 64 tokens, some cut there), not in length order."""
    long = [" ".join(TEXTS[: 3 * k]) for k in range(1, 6)]
    texts = [t for pair in zip(TEXTS[:10], long + long[::-1], strict=True) for t in pair]
    return texts + TEXTS[10:]


def shapes_seen(encoder: Encoder, texts: list[str], **kwargs) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """encode's vectors and the (rows, width) of every batch it ran."""
    seen: list[tuple[int, int]] = []
    forward = encoder.forward
    encoder.forward = lambda ids, *a, **kw: seen.append(tuple(ids.shape)) or forward(ids, *a, **kw)
    try:
        return encoder.encode(texts, **kwargs), seen
    finally:
        del encoder.forward


@pytest.mark.parametrize("side", ["right", "left"])  # left-padded BERT: a narrower padding would shift positions
def test_encode_under_a_token_budget_gives_the_rows_only_vectors_bit_for_bit(side: str) -> None:
    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    tok.padding_side = side
    encoder = tiny_encoder(tok, max_batch_tokens=None)
    texts = mixed_texts()
    expected, rows_only = shapes_seen(encoder, texts, batch_size=8)
    assert rows_only[0][1] == 64 and rows_only[-1][1] < 12  # long texts cut at max_length, short ones short
    widths = sorted(w for rows, w in rows_only for _ in range(rows))
    for budget in (1, 100, 300):
        got, seen = shapes_seen(encoder, texts, batch_size=8, max_batch_tokens=budget)
        assert np.array_equal(got, expected), budget  # bitwise, and back in input order
        assert all(rows * width <= budget or rows == 1 for rows, width in seen)
        assert len(seen) > len(rows_only)  # the budget really split batches
        assert sorted(w for rows, w in seen for _ in range(rows)) == widths  # each text padded as without it
    encoder.max_batch_tokens = 100  # the encoder's own budget is the default
    got, seen = shapes_seen(encoder, texts, batch_size=8)
    assert np.array_equal(got, expected) and max(rows * width for rows, width in seen) <= 100


def test_the_knob_reaches_the_encoder_and_is_checked(tok) -> None:
    assert EncoderConfig(path="x").max_batch_tokens == DEFAULT_BATCH_TOKENS
    assert tiny_encoder(tok).max_batch_tokens == DEFAULT_BATCH_TOKENS
    with pytest.raises(ConfigError, match="max_batch_tokens"):
        tiny_encoder(tok, max_batch_tokens=0)


@pytest.mark.slow
def test_minilm_on_scifact_abstracts_bit_for_bit(real_data: Path) -> None:
    """Real heavy-tailed lengths: SciFact abstracts (many cut at 256 tokens) and claims, MiniLM, fp32 torch."""
    data = load_task("scifact", real_data, limit=12, max_docs=36)
    texts = [t for pair in zip(data.corpus.values(), data.queries.values(), strict=False) for t in pair]
    texts += list(data.corpus.values())[len(data.queries) :]
    encoder = Encoder.from_pretrained("all-MiniLM-L6-v2", max_batch_tokens=None)
    assert encoder.resolved_precision() == "fp32" and runtime.backend_name(encoder) == "torch"
    expected, rows_only = shapes_seen(encoder, texts, batch_size=32)
    got, seen = shapes_seen(encoder, texts, batch_size=32, max_batch_tokens=2048)
    assert rows_only[0] == (32, 256) and all(rows * width <= 2048 for rows, width in seen)
    assert np.array_equal(got, expected)
