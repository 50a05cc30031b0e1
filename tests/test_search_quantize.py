"""Exact search (faiss vs brute force) and embedding quantization: Matryoshka truncation, int8, binary."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import ConfigError
from embedlab.eval import quantize
from embedlab.eval.search import search_hamming, search_inner_product


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------
# search
# ---------------------------------------------------------------------------------------------------------


def test_search_inner_product_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    docs = unit(rng.standard_normal((300, 24))).astype(np.float32)
    queries = unit(rng.standard_normal((9, 24))).astype(np.float32)
    scores, idx = search_inner_product(queries, docs, 15, use_gpu=False)
    full = queries.astype(np.float64) @ docs.astype(np.float64).T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :15]
    assert scores.shape == idx.shape == (9, 15)
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), atol=1e-5)


def test_search_inner_product_clips_k_to_the_corpus() -> None:
    rng = np.random.default_rng(1)
    docs, queries = unit(rng.standard_normal((5, 8))), unit(rng.standard_normal((3, 8)))
    scores, idx = search_inner_product(queries, docs, 50, use_gpu=False)
    assert scores.shape == idx.shape == (3, 5)
    for row in idx:
        assert sorted(row.tolist()) == [0, 1, 2, 3, 4]  # every doc once, no -1 padding
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ docs.T, idx, 1), atol=1e-5)


def test_search_hamming_distances_are_popcounts_of_xor() -> None:
    rng = np.random.default_rng(2)
    doc_bits = rng.integers(0, 256, (120, 4), dtype=np.uint8)  # 32-bit codes
    query_bits = rng.integers(0, 256, (6, 4), dtype=np.uint8)
    dist, idx = search_hamming(query_bits, doc_bits, 10)
    popcount = np.unpackbits(query_bits[:, None, :] ^ doc_bits[None, :, :], axis=-1).sum(-1)  # [Q, N]
    assert dist.shape == idx.shape == (6, 10)
    np.testing.assert_array_equal(dist, np.take_along_axis(popcount, idx, 1))
    # the k smallest distances, ascending (which of several tied docs comes back is faiss' choice)
    np.testing.assert_array_equal(dist, np.sort(popcount, axis=1)[:, :10])
    dist, idx = search_hamming(query_bits, doc_bits[:4], 10)
    assert dist.shape == (6, 4) and (idx >= 0).all()


# ---------------------------------------------------------------------------------------------------------
# quantize
# ---------------------------------------------------------------------------------------------------------


def test_truncate_renormalises_and_keeps_the_direction_of_the_first_dims() -> None:
    rng = np.random.default_rng(3)
    emb = unit(rng.standard_normal((10, 8)))
    cut = quantize.truncate(emb, 3)
    assert cut.shape == (10, 3)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-6)
    head = emb[:, :3]
    # same direction: cut is head scaled by a positive factor
    np.testing.assert_allclose(cut * np.linalg.norm(head, axis=1, keepdims=True), head, atol=1e-6)
    assert quantize.truncate(emb, None) is emb
    np.testing.assert_array_equal(quantize.truncate(emb, 8), emb)


@pytest.mark.parametrize("dim", [0, -1, 9])
def test_truncate_rejects_dims_outside_the_embedding(dim: int) -> None:
    with pytest.raises(ConfigError, match="truncation dim"):
        quantize.truncate(np.ones((2, 8), np.float32), dim)


def test_int8_round_trip_within_half_a_step_and_clipped_outside() -> None:
    rng = np.random.default_rng(4)
    calibration = rng.uniform(-1.0, 2.0, (64, 6)) * np.array([1, 2, 0.1, 5, 1, 0.5])
    low, step = quantize.int8_calibration(calibration)
    codes = quantize.to_int8(calibration, low, step)
    assert codes.dtype == np.int8
    back = (codes.astype(np.float64) + 128.0) * step + low
    assert (np.abs(back - calibration) <= step / 2 * (1 + 1e-4) + 1e-7).all()
    # the calibrated extremes land on the extreme codes
    np.testing.assert_array_equal(quantize.to_int8(calibration.min(0, keepdims=True), low, step), -128)
    np.testing.assert_array_equal(quantize.to_int8(calibration.max(0, keepdims=True), low, step), 127)
    outside = np.stack([calibration.min(0) - 10.0, calibration.max(0) + 10.0])
    np.testing.assert_array_equal(quantize.to_int8(outside, low, step), [[-128] * 6, [127] * 6])


def test_binary_packing_unpacks_to_signs() -> None:
    rng = np.random.default_rng(5)
    emb = rng.standard_normal((7, 13)).astype(np.float32)  # 13 dims: the last byte is padded
    emb[0, 0] = 0.0  # zero is not positive -> -1
    bits = quantize.to_binary(emb)
    assert bits.dtype == np.uint8 and bits.shape == (7, 2)
    signs = quantize.unpack_signs(bits, 13)
    assert signs.dtype == np.float32 and signs.shape == (7, 13)
    np.testing.assert_array_equal(signs, np.where(emb > 0, 1.0, -1.0))


def test_unknown_precision_and_bad_dims_are_config_errors() -> None:
    quantize.check_precisions(list(quantize.PRECISIONS))
    with pytest.raises(ConfigError, match=r"fp8.*float32, int8, binary"):
        quantize.check_precisions(["float32", "fp8"])
    quantize.check_dims([None, 1, 8], 8)
    for dims in ([], [0], [9], [2.5], [True]):
        with pytest.raises(ConfigError):
            quantize.check_dims(dims, 8)
