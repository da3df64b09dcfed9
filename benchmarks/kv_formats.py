"""fp16 or int8 KV cache (engine/kv_cache.py's KINDS): cost and accuracy of decode attention alone.

Usage: python benchmarks/kv_formats.py [DEPTH] [THREADS]
Bonsai-1.7B's shapes (28 layers, 16 query heads on 8 KV heads of 128), random keys and values with
a few outlier dims. Prints, per cache type: one token's attention over DEPTH positions (all 28
layers, each its own cache) as thread CPU time on one thread, or wall time with THREADS,
the bytes it streams, and the error of its output against float64 attention over the unrounded
keys and values.
"""

from __future__ import annotations

import math
import sys
import time

import numba
import numpy as np

from engine.kv_cache import KINDS, KVCache

LAYERS, N_KV, HEAD_DIM, N_HEAD = 28, 8, 128, 16


def float64_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    k, v = np.repeat(k, N_HEAD // N_KV, axis=1), np.repeat(v, N_HEAD // N_KV, axis=1)
    s = np.einsum("hd,phd->hp", q, k) / math.sqrt(HEAD_DIM)
    w = np.exp(s - s.max(1, keepdims=True))
    return np.einsum("hp,phd->hd", w / w.sum(1, keepdims=True), v)


def per_token_ms(run, threads: int) -> float:
    """Best of 3 of one token's 28 layers, each over its own cache (so it streams from memory)."""
    clock = time.thread_time if threads == 1 else time.perf_counter
    run(0)
    best = math.inf
    for _ in range(3):
        start = clock()
        for layer in range(LAYERS):
            run(layer)
        best = min(best, (clock() - start) * 1e3)
    return best


def main() -> None:
    depth = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    numba.set_num_threads(threads)
    rng = np.random.default_rng(0)
    k = rng.standard_normal((depth, N_KV, HEAD_DIM)) * (1 + 3 * (rng.random((1, 1, HEAD_DIM)) < 0.05))  # a few outlier dims
    v = rng.standard_normal((depth, N_KV, HEAD_DIM))
    q = rng.standard_normal((N_HEAD, HEAD_DIM)).astype(np.float32) * 0.3
    want = float64_attention(q.astype(np.float64), k, v)
    out = np.empty_like(q)
    what = "thread CPU time, 1 thread" if threads == 1 else f"wall time, {threads} threads"
    for kind in KINDS:
        cache = KVCache.for_config_shape(LAYERS, depth, N_KV, HEAD_DIM, kind)
        for layer in range(LAYERS):
            cache.store(layer, 0, k.astype(np.float32), v.astype(np.float32))
        ms = per_token_ms(lambda layer: cache.attend_one_token(q, layer, depth, out), threads)
        mb = cache.nbytes / 1e6
        error = np.abs(out - want).max() / np.abs(want).max()
        print(f"{kind}: {ms:.1f} ms/token ({what}), {mb:.0f} MB/token, {mb / ms:.1f} GB/s, max error {error:.1e} of max |out|")


if __name__ == "__main__":
    main()
