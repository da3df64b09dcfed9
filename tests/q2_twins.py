"""Every Q2_0 matrix kernel of this process's instruction-set path against its float64 NumPy twin,
in both file layouts. Run by tests/kernel_twins.py (the host's path in-process, the capped ones in
subprocesses)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engine import q2_kernels, q2_lanes, simd
from engine.q2_matrix import Q2Matrix

LAYOUTS = ("g128", "g64")
# (rows, cols): rows not a multiple of 16 (lanes) or 64 (tiles); one group; an odd count of blocks
# (3 x 128, 3 x 64); a single row
SHAPES = {"g128": [(131, 512), (16, 128), (37, 384), (1, 256)], "g64": [(131, 512), (16, 64), (37, 192), (1, 128)]}
BATCHES = [1, 3, 13, 70]  # GEMV; GEMM with one partial tile; several tiles and a partial one; two chunks


def dense_float64(data: np.ndarray, cols: int) -> np.ndarray:
    """The Q2_0 matrix (either file layout) as float64, straight from the layout's definition."""
    block, block_bytes = q2_kernels.block_layout(cols, data.shape[1])
    blocks = data.reshape(data.shape[0], cols // block, block_bytes)
    d = blocks[:, :, :2].copy().view("<f2").astype(np.float64)
    codes = np.stack([(blocks[:, :, 2:] >> (2 * s)) & 3 for s in range(4)], axis=-1)  # weight 4k + s
    return ((codes.reshape(len(data), -1, block) - 1.0) * d).reshape(len(data), cols)


def random_matrix(rng: np.random.Generator, rows: int, cols: int, layout: str, scale: float = 0.05) -> np.ndarray:
    """Q2_0 bytes in `layout` with every block's own d (synth.random_q2's g64 blocks share theirs
    in pairs) and every code 0..3, code 3 (+2d) included, which ternary files never hold: the kernels
    must neither assume ternary codes nor mix up the two halves of a 128-weight block."""
    block, block_bytes = q2_kernels.LAYOUTS[layout]
    d = (rng.uniform(0.5, 1.5, size=(rows, cols // block, 1)) * scale).astype("<f2").view(np.uint8)
    codes = rng.integers(0, 256, size=(rows, cols // block, block // 4), dtype=np.uint8)
    return np.concatenate([d, codes], axis=2).reshape(rows, cols // block * block_bytes)


def activations(rng: np.random.Generator, n: int, cols: int) -> np.ndarray:
    """Rows whose 32-blocks differ in magnitude by 3000x, with all-zero blocks."""
    x = rng.standard_normal((n, cols)).astype(np.float32)
    return x * np.resize(np.array([0.01, 1.0, 30.0, 0.0], np.float32), cols // 32).repeat(32)


def rounded_float64(x: np.ndarray) -> np.ndarray:
    """llama.cpp's Q8_0 rounding of x (per 32 values, scale max|x| / 127, x times the scale's float32
    inverse to nearest), as float64 codes times scales."""
    blocks = x.reshape(len(x), -1, 32)
    scales = (np.abs(blocks).max(2, keepdims=True).astype(np.float64) / 127).astype(np.float32)
    inverse = np.divide(np.float32(1), scales, out=np.zeros_like(scales), where=scales > 0)
    codes = np.round(blocks * inverse)  # float32, ties to even, as the kernel
    return (codes.astype(np.float64) * scales).reshape(x.shape)


def check_quantize(rng: np.random.Generator) -> None:
    x = activations(rng, 5, 256)
    codes, xs, corr = q2_lanes.quantize(x, pad=8)
    assert codes.shape == (8, 256) and corr.shape == (8, 4) and not codes[5:].any()
    np.testing.assert_allclose(codes[:5] * xs[:5].repeat(32, axis=1).astype(np.float64), rounded_float64(x), rtol=1e-6)
    sums = (codes[:5].reshape(5, -1, 32).sum(2) * xs[:5].astype(np.float64)).reshape(5, 4, 2).sum(2)
    np.testing.assert_allclose(corr[:5], sums, rtol=1e-5, atol=1e-6)  # per 64-column block


def check_layout() -> None:
    """Word 2s holds the low bits, 2s + 1 the high bits of row i, column 4s + j at bit 4i + j; a
    128-weight block's d serves both of its 64-column halves; unpacking gives the file's weights."""
    rng = np.random.default_rng(3)
    for layout in LAYOUTS:
        data = random_matrix(rng, 20, 256, layout, scale=0.5)
        words, scales = q2_lanes.empty_lanes(20, 256)
        q2_lanes.to_lanes(data, q2_kernels.LAYOUTS[layout][0], words, scales)
        dense = dense_float64(data, 256)
        for r in (0, 5, 15, 16, 19):
            for c in (0, 3, 4, 63, 64, 127, 128, 255):
                word = words[r // 16, c // 64, 2 * ((c % 64) // 4) :]
                code = sum((int(word[plane]) >> (4 * (r % 16) + c % 4) & 1) << plane for plane in (0, 1))
                d = scales[r // 16, c // 64, r % 16 : r % 16 + 1].view("<f2")[0]
                assert dense[r, c] == (code - 1) * float(d), (layout, r, c)
        assert not (words[1] >> np.uint64(16)).any() and not scales[1, :, 4:].any()  # rows 20..31: padding
        out = np.empty((20, 256), np.float32)
        q2_lanes.dequantize(words, scales, 0, 20, out)
        np.testing.assert_array_equal(out, dense)


def check_products(rng: np.random.Generator, int8: bool) -> None:
    pool = ThreadPoolExecutor(2)
    for layout in LAYOUTS:
        for rows, cols in SHAPES[layout]:
            data = random_matrix(rng, rows, cols, layout)
            dense = dense_float64(data, cols)
            matrix = Q2Matrix(data, cols, pool, int8=int8)
            for n in BATCHES:
                x = activations(rng, n, cols)
                got = matrix.matmul(x)
                assert got.shape == (n, rows) and got.dtype == np.float32
                # int8: the exact product of the rounded activations; float32: of x itself
                want = (rounded_float64(x) if int8 else x.astype(np.float64)) @ dense.T
                tolerance = 1e-5 * np.abs(want).max()
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=tolerance, err_msg=f"{layout} {rows}x{cols}, {n} rows")
            ids = np.array([0, rows - 1, rows // 2])
            np.testing.assert_array_equal(matrix.rows_as_float(ids), dense[ids])


def run(rng: np.random.Generator) -> list[str]:
    """All Q2_0 checks for this process's path; returns their names."""
    check_products(rng, int8=False)
    checks = ["Q2_0 float32 lookup table + unpack/BLAS"]
    if simd.AVAILABLE:
        check_quantize(rng)
        check_layout()
        check_products(rng, int8=True)
        checks += list(Q2Matrix(np.zeros((1, 18), np.uint8), 64, ThreadPoolExecutor(1), int8=True).kernel_names().values())
    return checks
