"""Per-core speed of the Q1_0 int8 kernels at Bonsai-1.7B's shapes: CPU time of one thread.

Usage: python benchmarks/q1_kernel_speed.py        (honours BONSAI_TUI_CPU)
Prints one JSON line: the path, Numba's target CPU, the decode GEMV in G weights/s and the prefill
GEMM (512 rows) in G multiply-adds/s, per shape. Under BONSAI_TUI_CPU=avx2 the kernels are compiled
for Haswell, as on an AVX2 laptop: the same steps compiled for an AVX-512 host run faster, since
LLVM then uses AVX-512BW/VL instructions on their 256-bit vectors.
"""

from __future__ import annotations

import json
import time

SHAPES = {"qkv": (4096, 2048), "gate_up": (12288, 2048), "down": (2048, 6144), "lm_head": (151936, 2048)}
GEMM_ROWS = 512


def per_second(fn, work: float, seconds: float = 1.0) -> float:
    fn()  # compiled or loaded from the cache before the clock runs
    calls, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        fn()
        calls += 1
    return work * calls / (time.process_time() - start) / 1e9


def main() -> dict:
    import engine  # noqa: F401  (first: it applies BONSAI_TUI_CPU before Numba loads)

    import numba
    import numpy as np
    from engine import lanes, simd
    from engine.matrix import Q8Rows
    from engine.synth import random_q1

    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    result = {"kernel": simd.KERNEL, "numba_cpu": numba.config.CPU_NAME or "host"}
    for name, (rows, cols) in SHAPES.items():
        words, scales = lanes.empty_lanes(rows, cols)
        lanes.to_lanes(random_q1(rng, rows, cols, 0.05), words, scales)
        x = rng.standard_normal((GEMM_ROWS, cols)).astype(np.float32)
        out = np.empty(words.shape[0] * lanes.ROWS, np.float32)
        result[f"gemv {name} G weights/s"] = round(per_second(lambda: lanes.gemv(words, scales, x[0], out), rows * cols), 1)
        if name != "lm_head":  # prefill never multiplies the LM head by every row
            q = Q8Rows.of(x, pad=lanes.GEMM_TOKENS)
            product = np.empty((q.codes.shape[0], words.shape[0] * lanes.ROWS), np.float32)
            gemm = lambda: lanes.gemm(words, scales, q.codes, q.double_scales, q.corrections, product)  # noqa: E731
            result[f"gemm {name} G MAC/s"] = round(per_second(gemm, GEMM_ROWS * rows * cols), 1)
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
