"""The fp16 KV cache and the decode attention kernel that reads it, against a NumPy twin."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.attention import attend_one_token, exp_nonpositive
from engine.kv_cache import BLOCK, KVCache


def twin_attention(q: np.ndarray, cache: KVCache, layer: int, n_keys: int) -> np.ndarray:
    """attend_one_token in float64 NumPy, from the cache's fp16 values."""
    n_head, head_dim = q.shape
    group = n_head // cache.n_head_kv
    out = np.empty((n_head, head_dim))
    for h in range(n_head):
        keys = cache.keys(layer, h // group, n_keys).astype(np.float64)
        values = cache.values(layer, h // group, n_keys).astype(np.float64)
        scores = keys @ q[h].astype(np.float64) / math.sqrt(head_dim)
        weights = np.exp(scores - scores.max())
        out[h] = weights @ values / weights.sum()
    return out


def random_cache(n_layers: int, n_ctx: int, n_head_kv: int, head_dim: int, seed: int = 0) -> KVCache:
    rng = np.random.default_rng(seed)
    cache = KVCache(n_layers, n_ctx, n_head_kv, head_dim)
    for layer in range(n_layers):
        k, v = (rng.standard_normal((n_ctx, n_head_kv, head_dim)).astype(np.float32) * 2 for _ in range(2))
        cache.store(layer, 0, k, v)
    return cache


@pytest.mark.parametrize("n_head, n_head_kv, head_dim", [(4, 2, 64), (2, 2, 128), (8, 2, 32), (3, 1, 48)])
@pytest.mark.parametrize("n_keys", [1, 3, 5, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 7])
def test_decode_attention_matches_the_float64_twin(n_head: int, n_head_kv: int, head_dim: int, n_keys: int) -> None:
    cache = random_cache(2, 2 * BLOCK + 9, n_head_kv, head_dim)
    q = np.random.default_rng(1).standard_normal((n_head, head_dim)).astype(np.float32)
    out = np.full_like(q, np.nan)
    attend_one_token(q, cache.k_bits, cache.v_bits, 1, n_keys, out)
    np.testing.assert_allclose(out, twin_attention(q, cache, 1, n_keys), rtol=0, atol=2e-6)


def test_equal_scores_average_the_values_exactly() -> None:
    cache = KVCache(1, 8, 1, 16)
    values = np.array([0.5, 1.5, -2.0, 4.0], dtype=np.float32)[:, None, None] * np.ones((4, 1, 16), np.float32)
    cache.store(0, 0, np.zeros((4, 1, 16), np.float32), values)
    out = np.empty((2, 16), np.float32)
    attend_one_token(np.ones((2, 16), np.float32), cache.k_bits, cache.v_bits, 0, 4, out)
    assert np.all(out == 1.0)  # weights of exactly 1/4: (0.5 + 1.5 - 2 + 4) / 4


def test_a_dominant_key_selects_its_value_exactly() -> None:
    cache = KVCache(1, 300, 1, 16)
    keys = np.zeros((300, 1, 16), np.float32)
    keys[257] = 8.0  # score 8*8*16/4 = 256 above the others: their weights underflow to 0
    values = (np.arange(300 * 16, dtype=np.float32).reshape(300, 1, 16) % 1024) / 64  # exact in fp16
    cache.store(0, 0, keys, values)
    out = np.empty((1, 16), np.float32)
    attend_one_token(np.full((1, 16), 8.0, np.float32), cache.k_bits, cache.v_bits, 0, 300, out)
    np.testing.assert_array_equal(out[0], values[257, 0])


def test_the_cache_keeps_fp16_values_across_blocks() -> None:
    cache = KVCache(3, 2 * BLOCK, 2, 8)
    rng = np.random.default_rng(2)
    k, v = rng.standard_normal((2, 20, 2, 8)).astype(np.float32)
    cache.store(2, BLOCK - 7, k, v)  # 7 positions in the first block, 13 in the second
    np.testing.assert_array_equal(cache.keys(2, 1, BLOCK + 13)[BLOCK - 7 :], k[:, 1].astype(np.float16))
    np.testing.assert_array_equal(cache.values(2, 0, BLOCK + 13)[BLOCK - 7 :], v[:, 0].astype(np.float16))
    assert not cache.keys(1, 1, BLOCK + 13).any()  # other layers untouched
    assert cache.nbytes == 2 * 3 * 2 * BLOCK * 2 * 8 * 2
    with pytest.raises(ValueError, match="do not fit a context of 512"):
        cache.store(0, 2 * BLOCK - 1, k[:2], v[:2])


def test_softmax_exp_is_accurate_where_weights_matter() -> None:
    assert exp_nonpositive(np.float32(0.0)) == 1.0
    xs = np.linspace(-80.0, 0.0, 20001, dtype=np.float32)
    got = np.array([exp_nonpositive(x) for x in xs])
    np.testing.assert_allclose(got, np.exp(xs.astype(np.float64)), rtol=1e-6, atol=0)
    assert exp_nonpositive(np.float32(-200.0)) < 1e-37


def test_dropping_positions_moves_the_rest_down_as_if_prefilled_there(exact_tiny_model) -> None:
    model = exact_tiny_model
    ids = [11, 500, 7, 960, 42, 3, 77, 18, 250, 9, 640, 31, 5, 820, 66, 2, 400, 13, 90, 700]
    cache = model.new_cache(32)
    model.forward(ids, cache, 0)
    assert model.drop_positions(cache, 5, 10, len(ids)) == 15
    fresh = model.new_cache(32)
    model.forward(ids[:5] + ids[10:], fresh, 0)
    # layer 0's keys and values depend on the token alone: the same as a fresh prefill but for
    # fp16 rounding (the moved keys were rounded, rotated, rounded again)
    (k, v), (k_fresh, v_fresh) = cache.read(0, 0, 15), fresh.read(0, 0, 15)
    np.testing.assert_array_equal(v, v_fresh)
    np.testing.assert_array_equal(k[:5], k_fresh[:5])
    np.testing.assert_allclose(k[5:], k_fresh[5:], rtol=0, atol=4e-3 * np.abs(k_fresh).max())
    assert np.abs(k[5:] - k_fresh[5:]).max() > 0  # they did move through a rotation
    with pytest.raises(ValueError, match="cannot drop positions 10..5 of 15"):
        model.drop_positions(cache, 10, 5, 15)
