"""One matrix, three storage types: Q1_0 against Q2_0 in both layouts, each GEMV and the prefill GEMM
(int8 where this CPU has a kernel, else exact: BONSAI_TUI_CPU=avx2 measures the AVX2 steps).

Usage (under the bench lock): flock /tmp/bench.lock .venv/bin/python benchmarks/q2_gemv_bench.py [ROWS COLS]
Default 12288 x 2048, Bonsai-1.7B's stacked gate/up matrix. One thread; CPU seconds per call are
printed beside the wall time (the machine is shared: CPU time moves less with the neighbours).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from engine import simd  # first: BONSAI_TUI_CPU must reach Numba before it is imported

import numba  # noqa: E402
import numpy as np  # noqa: E402
from engine.matrix import Q1Matrix
from engine.q2_matrix import Q2Matrix
from engine.synth import random_q1, random_q2

REPEATS = 20


def timed(fn, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - wall) / repeats, (time.process_time() - cpu) / repeats


def main() -> None:
    rows, cols = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (12288, 2048)
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    pool = ThreadPoolExecutor(1)
    x = rng.standard_normal(cols).astype(np.float32)
    prompt = rng.standard_normal((512, cols)).astype(np.float32)
    matrices = {
        "Q1_0": lambda int8: Q1Matrix(random_q1(rng, rows, cols, 0.05), cols, pool, int8),
        "Q2_0 g128": lambda int8: Q2Matrix(random_q2(rng, rows, cols, 0.05, "g128"), cols, pool, int8),
        "Q2_0 g64": lambda int8: Q2Matrix(random_q2(rng, rows, cols, 0.05, "g64"), cols, pool, int8),
    }
    print(f"{rows} x {cols}, 1 thread; wall ms (CPU ms) per call")
    print("| weights | decode | one row (encode + GEMV) | G weights/s (CPU) | encode x | 512 rows |")
    print("|---|---|---|---|---|---|")
    for int8 in ([True, False] if simd.AVAILABLE else [False]):
        for name, make in matrices.items():
            matrix = make(int8)
            one_row = x[None, :]
            matrix.matmul(one_row)  # compile / warm
            gemv_wall, gemv_cpu = timed(lambda: matrix.matmul(one_row), REPEATS)  # decode: encode + GEMV
            # the exact GEMV's table per input row (the int8 GEMV rounds its row inside the call)
            encode = f"{timed(lambda: matrix.encode(x), REPEATS)[0] * 1e3:.3f}" if not int8 else "–"
            matrix.matmul(prompt[:100])
            gemm_wall, gemm_cpu = timed(lambda: matrix.matmul(prompt), 1)
            print(f"| {name} | {'int8' if int8 else 'exact'} | {gemv_wall * 1e3:.2f} ({gemv_cpu * 1e3:.2f}) "
                  f"| {rows * cols / gemv_cpu / 1e9:.1f} | {encode} "
                  f"| {gemm_wall * 1e3:.0f} ({gemm_cpu * 1e3:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
