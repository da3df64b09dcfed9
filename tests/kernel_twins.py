"""Every matrix kernel of this process's instruction-set path (and attention's fp16 read) against its
NumPy twin.

Imported by tests/test_kernels.py for the host's path, and run as a script under each
BONSAI_TUI_CPU cap (Numba's target CPU is fixed per process): prints the path and the checks run,
or fails with an AssertionError.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import attention, lanes, simd  # noqa: E402  (first: BONSAI_TUI_CPU must reach Numba before it loads)
from numba import njit  # noqa: E402
import q2_twins  # noqa: E402
from engine.matrix import Q1Matrix, Q8Rows, kernel_names  # noqa: E402
from engine.synth import random_q1  # noqa: E402

# (rows, cols): rows not a multiple of 16; exactly one group; one block per row; a single row
SHAPES = [(300, 512), (16, 128), (37, 128), (1, 256)]
BATCHES = [1, 3, 13, 70]  # GEMV; GEMM with one partial tile; several tiles and a partial one; two chunks


def dense_float64(data: np.ndarray, cols: int) -> np.ndarray:
    """The Q1_0 matrix (file layout) as float64 weights: +d where the bit is set, -d elsewhere."""
    blocks = data.reshape(data.shape[0], cols // 128, 18)
    d = blocks[:, :, :2].copy().view("<f2").astype(np.float64)
    bits = np.unpackbits(blocks[:, :, 2:], axis=2, bitorder="little")
    return ((2.0 * bits - 1.0) * d).reshape(data.shape[0], cols)


def activations(rng: np.random.Generator, n: int, cols: int) -> np.ndarray:
    """Rows whose 32-blocks differ in magnitude by 3000x, with all-zero blocks."""
    x = rng.standard_normal((n, cols)).astype(np.float32)
    x *= np.resize(np.array([0.01, 1.0, 30.0, 0.0], np.float32), cols // 32).repeat(32)
    return x


def rounded_float64(encoded: Q8Rows, n: int) -> np.ndarray:
    """The activations the int8 kernels multiply: codes x their 32-block's scale, in float64."""
    scales = np.repeat(encoded.double_scales[:n].astype(np.float64) / 2, lanes.Q8_BLOCK, axis=1)
    return encoded.codes[:n] * scales


def check_quantize(rng: np.random.Generator) -> None:
    x = activations(rng, 5, 256)
    encoded = Q8Rows.of(x, pad=8)
    assert encoded.codes.shape == (8, 256) and not encoded.codes[5:].any()
    scales = np.abs(x.reshape(5, -1, 32)).max(2) / 127
    np.testing.assert_allclose(encoded.double_scales[:5] / 2, scales, rtol=1e-6)
    rounded = rounded_float64(encoded, 5)
    assert np.all(np.abs(rounded - x) <= np.repeat(scales, 32, axis=1) / 2 * 1.0001)  # to nearest
    sums = encoded.codes[:5].reshape(5, -1, 4, 32).sum(3, dtype=np.float64)
    corrections = (sums * scales.reshape(5, -1, 4)).sum(2)
    np.testing.assert_allclose(encoded.corrections[:5], corrections, rtol=1e-5, atol=1e-6)


def check_layout() -> None:
    """Bit 4*i + j of word s is row i, column 4*s + j; unpacking gives the file's weights back."""
    rng = np.random.default_rng(3)
    data = random_q1(rng, 20, 256, 0.5)
    words, scales = lanes.empty_lanes(20, 256)
    lanes.to_lanes(data, words, scales)
    dense = dense_float64(data, 256)
    bit = lambda r, c: int(words[r // 16, c // 128, (c % 128) // 4]) >> (4 * (r % 16) + c % 4) & 1  # noqa: E731
    assert all(bit(r, c) == (dense[r, c] > 0) for r in (0, 5, 15, 16, 19) for c in (0, 3, 4, 127, 128, 255))
    assert not (words[1] >> np.uint64(16)).any() and not scales[1, :, 4:].any()  # rows 20..31: padding
    out = np.empty((20, 256), np.float32)
    lanes.dequantize(words, scales, 0, 20, out)
    np.testing.assert_array_equal(out, dense)


def check_products(rng: np.random.Generator, int8: bool) -> None:
    pool = ThreadPoolExecutor(2)
    for rows, cols in SHAPES:
        data = random_q1(rng, rows, cols, 0.05)
        dense = dense_float64(data, cols)
        matrix = Q1Matrix(data, cols, pool, int8=int8)
        for n in BATCHES:
            x = activations(rng, n, cols)
            got = matrix.matmul(x)
            assert got.shape == (n, rows) and got.dtype == np.float32
            if int8:  # integer kernels: the exact product of the rounded activations
                want = rounded_float64(Q8Rows.of(x), n) @ dense.T
            else:  # float32 kernels (lookup table, unpack + BLAS): the product of x itself
                want = x.astype(np.float64) @ dense.T
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=f"{rows}x{cols}, {n} rows")
        ids = np.array([0, rows - 1, rows // 2])
        np.testing.assert_array_equal(matrix.rows_as_float(ids), dense[ids])


@njit
def _halves_to_float(bits: np.ndarray, out: np.ndarray) -> None:
    for i in range(bits.shape[0]):
        out[i] = attention.half_to_float(bits[i])


def check_half_to_float() -> str:
    """The KV cache's fp16 read as attention reads it, for every finite half, against NumPy."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    bits = bits[np.isfinite(bits.view(np.float16))]
    got = np.empty(len(bits), np.float32)
    _halves_to_float(bits, got)
    np.testing.assert_array_equal(got.view(np.uint32), bits.view(np.float16).astype(np.float32).view(np.uint32))
    return "fp16 keys " + ("F16C" if attention.HAS_F16C else "by bit arithmetic")


def run() -> list[str]:
    """All checks for this process's path; returns their names."""
    rng = np.random.default_rng(1)
    checks = ["float32 lookup table + unpack/BLAS", check_half_to_float()]
    check_products(rng, int8=False)
    if simd.AVAILABLE:
        check_quantize(rng)
        check_layout()
        check_products(rng, int8=True)
        checks += list(kernel_names(int8=True).values())
    return checks + q2_twins.run(rng)


if __name__ == "__main__":
    print(simd.KERNEL, "|", "; ".join(run()))
