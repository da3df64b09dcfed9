"""The int8 KV cache's decode attention against its float64 NumPy twin, on this process's path.

Imported by tests/test_kv_q8.py for the host's path, and run as a script under each
BONSAI_TUI_CPU cap (Numba's target CPU is fixed per process): prints the path and the number of
checks, or fails with an AssertionError.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import attention_q8  # noqa: E402
from engine.kv_cache import BLOCK, Q8KVCache  # noqa: E402

# (n_head, n_head_kv, head_dim): GQA pairs on the VNNI steps; group 3 (a pair and a lone head);
# head_dim 64 and 96 (not whole 128-dim chunks: the plain loops on every CPU); no GQA
SHAPES = [(16, 8, 128), (6, 2, 128), (4, 2, 64), (3, 1, 96), (2, 2, 128)]
N_KEYS = [1, 3, 17, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 7]
# the int16 codes of weight x value scale: 0.5 / 32767 of a tile's largest each, 16 to a tile
WEIGHT_ROUNDING = 5e-5


def random_cache(n_ctx: int, n_head_kv: int, head_dim: int, seed: int = 0) -> tuple[Q8KVCache, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cache = Q8KVCache(2, n_ctx, n_head_kv, head_dim)
    outliers = 1 + 20 * (rng.random(head_dim) < 0.05)  # a few large dims, as real keys have
    k = (rng.standard_normal((n_ctx, n_head_kv, head_dim)) * outliers).astype(np.float32)
    v = rng.standard_normal((n_ctx, n_head_kv, head_dim)).astype(np.float32) * 2
    cache.store(1, 0, k, v)
    return cache, k, v


def rounded_query(q: np.ndarray) -> np.ndarray:
    """The query the kernel multiplies: its int8 codes times their scales, in float64."""
    n_head, head_dim = q.shape
    codes = np.empty((n_head, head_dim), np.int8)
    scales = np.empty((n_head, head_dim // 32), np.float32)
    corrections = np.empty((n_head, head_dim // 32), np.int32)
    attention_q8.quantize_query(q, codes, scales, corrections)
    assert np.array_equal(corrections, 128 * codes.reshape(n_head, -1, 32).sum(2, dtype=np.int32))
    return (codes.reshape(n_head, -1, 32) * scales[..., None].astype(np.float64) * math.sqrt(head_dim)).reshape(q.shape)


def twin_attention(q: np.ndarray, cache: Q8KVCache, layer: int, n_keys: int) -> np.ndarray:
    """Decode attention in float64 over the cache's dequantized keys and values."""
    n_head, head_dim = q.shape
    group = n_head // cache.n_head_kv
    keys, values = (x.astype(np.float64) for x in cache.read(layer, 0, n_keys))
    query = rounded_query(q)
    out = np.empty((n_head, head_dim))
    for h in range(n_head):
        scores = keys[:, h // group] @ query[h] / math.sqrt(head_dim)
        weights = np.exp(scores - scores.max())
        out[h] = weights @ values[:, h // group] / weights.sum()
    return out


def check_attention(n_head: int, n_head_kv: int, head_dim: int) -> int:
    cache, _, _ = random_cache(2 * BLOCK + 9, n_head_kv, head_dim)
    q = np.random.default_rng(1).standard_normal((n_head, head_dim)).astype(np.float32) * 0.5
    for n_keys in N_KEYS:
        out = np.full_like(q, np.nan)
        cache.attend_one_token(q, 1, n_keys, out)
        want = twin_attention(q, cache, 1, n_keys)
        np.testing.assert_allclose(out, want, rtol=0, atol=WEIGHT_ROUNDING * 8, err_msg=f"{n_head}/{n_head_kv}x{head_dim}, {n_keys} keys")
    return len(N_KEYS)


def run() -> int:
    return sum(check_attention(*shape) for shape in SHAPES)


if __name__ == "__main__":
    checks = run()
    print(f"{attention_q8.VNNI and 'vnni' or 'loops'} | {checks} checks")
