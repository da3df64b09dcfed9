"""fp16 or int8 (one scale per position and head) for the KV cache: cost and accuracy of decode attention.

Usage: python benchmarks/kv_formats.py [DEPTH]
Bonsai-1.7B's shapes (28 layers, 16 query heads on 8 KV heads of 128), random keys and values.
Prints, per format: the CPU time of one token's attention over DEPTH positions on one thread
(thread time, so other load on the machine inflates it less), the bytes it streams, and the
error of its output against float64 attention over the unrounded keys and values.
The int8 kernel here is the fp16 kernel's loops with int8 codes times a per-row scale.
"""

from __future__ import annotations

import math
import sys
import time

import numba
import numpy as np
from numba import njit

from engine.attention import attend_one_token
from engine.kv_cache import KVCache

LAYERS, N_KV, HEAD_DIM, N_HEAD = 28, 8, 128, 16


@njit(fastmath=True)
def attend_int8(q, k8, k_scale, v8, v_scale, n_keys, out):
    """k8, v8: [n_kv, n_ctx, head_dim] int8; scales [n_kv, n_ctx]. The fp16 kernel's loops (GQA 2,
    four positions at a time, one conversion per pair of heads) with int8 codes and a row scale."""
    n_head, head_dim = q.shape
    group = n_head // k8.shape[0]
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for kv in range(k8.shape[0]):
        h = kv * group
        scores = np.empty((group, n_keys), dtype=np.float32)
        for p in range(0, n_keys - 3, 4):
            a = np.zeros(4, np.float32)
            b = np.zeros(4, np.float32)
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0.0)
            for i in range(head_dim):
                x, y = q[h, i], q[h + 1, i]
                k0, k1 = np.float32(k8[kv, p, i]), np.float32(k8[kv, p + 1, i])
                k2, k3 = np.float32(k8[kv, p + 2, i]), np.float32(k8[kv, p + 3, i])
                a0 += x * k0
                a1 += x * k1
                a2 += x * k2
                a3 += x * k3
                b0 += y * k0
                b1 += y * k1
                b2 += y * k2
                b3 += y * k3
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3] = a0, a1, a2, a3, b0, b1, b2, b3
            for j in range(4):
                scores[0, p + j] = a[j] * k_scale[kv, p + j] * scale
                scores[1, p + j] = b[j] * k_scale[kv, p + j] * scale
        for g in range(group):
            row = scores[g]
            row[:] = np.exp(row - row.max())
            row /= row.sum()
        acc = np.zeros((group, head_dim), dtype=np.float32)
        for p in range(0, n_keys - 3, 4):
            a0, a1 = scores[0, p] * v_scale[kv, p], scores[0, p + 1] * v_scale[kv, p + 1]
            a2, a3 = scores[0, p + 2] * v_scale[kv, p + 2], scores[0, p + 3] * v_scale[kv, p + 3]
            b0, b1 = scores[1, p] * v_scale[kv, p], scores[1, p + 1] * v_scale[kv, p + 1]
            b2, b3 = scores[1, p + 2] * v_scale[kv, p + 2], scores[1, p + 3] * v_scale[kv, p + 3]
            for i in range(head_dim):
                v0, v1 = np.float32(v8[kv, p, i]), np.float32(v8[kv, p + 1, i])
                v2, v3 = np.float32(v8[kv, p + 2, i]), np.float32(v8[kv, p + 3, i])
                acc[0, i] += (a0 * v0 + a1 * v1) + (a2 * v2 + a3 * v3)
                acc[1, i] += (b0 * v0 + b1 * v1) + (b2 * v2 + b3 * v3)
        out[h : h + group] = acc


def int8_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n_ctx, n_kv, head_dim] float -> codes [n_kv, n_ctx, head_dim] and scales [n_kv, n_ctx]."""
    x = x.transpose(1, 0, 2)
    scales = np.abs(x).max(-1) / 127
    return np.round(x / scales[..., None]).astype(np.int8), scales.astype(np.float32)


def float64_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    k, v = np.repeat(k, N_HEAD // N_KV, axis=1), np.repeat(v, N_HEAD // N_KV, axis=1)
    s = np.einsum("hd,phd->hp", q, k) / math.sqrt(HEAD_DIM)
    w = np.exp(s - s.max(1, keepdims=True))
    return np.einsum("hp,phd->hd", w / w.sum(1, keepdims=True), v)


def per_token_ms(run, layers: int = 4) -> float:
    run()
    best = math.inf
    for _ in range(3):
        start = time.thread_time()
        for _ in range(layers):
            run()
        best = min(best, (time.thread_time() - start) / layers * LAYERS * 1e3)
    return best


def main() -> None:
    depth = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    depth -= depth % 4  # the int8 sketch has no remainder loop
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    k = rng.standard_normal((depth, N_KV, HEAD_DIM)) * (1 + 3 * (rng.random((1, 1, HEAD_DIM)) < 0.05))  # a few outlier dims
    v = rng.standard_normal((depth, N_KV, HEAD_DIM))
    q = rng.standard_normal((N_HEAD, HEAD_DIM)).astype(np.float32) * 0.3
    want = float64_attention(q.astype(np.float64), k, v)
    out = np.empty_like(q)

    cache = KVCache(1, depth, N_KV, HEAD_DIM)
    cache.store(0, 0, k.astype(np.float32), v.astype(np.float32))
    ms = per_token_ms(lambda: attend_one_token(q, cache.k_bits, cache.v_bits, 0, depth, out))
    mb = 2 * LAYERS * depth * N_KV * HEAD_DIM * 2 / 1e6
    print(f"fp16: {ms:.1f} ms/token on one thread, {mb:.0f} MB/token, max error {np.abs(out - want).max():.2e}")

    (k8, ks), (v8, vs) = int8_rows(k), int8_rows(v)
    ms = per_token_ms(lambda: attend_int8(q, k8, ks, v8, vs, depth, out))
    mb = 2 * LAYERS * depth * N_KV * (HEAD_DIM + 4) / 1e6
    print(f"int8: {ms:.1f} ms/token on one thread, {mb:.0f} MB/token, max error {np.abs(out - want).max():.2e}")


if __name__ == "__main__":
    main()
