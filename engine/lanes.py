"""Q1_0 matrices in the "rows in lanes" layout, and the int8 kernels on it (decode GEMV, prefill GEMM).

Layout, built once at load (to_lanes): rows in groups of simd.ROWS = 16, the last padded with
zero rows (scale 0: they add nothing), and per group and 128-column block
    words  [groups, n_blocks, 32] uint64: bit 4*i + j of word s = sign bit of row 16*g + i,
                                          column 128*b + 4*s + j (set: +d, clear: -d)
    scales [groups, n_blocks, 16] uint16: the fp16 d of each row's block
The file's bytes (18 per 128 weights), in another order: a vector lane per row, so a GEMV needs
no horizontal sums and one broadcast activation serves 16 rows (see simd.py for the steps).

Activations are rounded to int8 per 32 values, as llama.cpp's Q8_0 (quantize_rows); the kernels
are exact integer sums of those codes, scaled in float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine import simd
from engine.kernels import Q1_BLOCK, Q1_BLOCK_BYTES, fp16_to_float

ROWS = simd.ROWS
STEPS = simd.STEPS
Q8_BLOCK = 32  # activations per int8 scale
GEMM_CHUNK = 64  # activation rows per pass over the weights: 64 x 6144 int8 stay in L2


def empty_lanes(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    groups, n_blocks = -(-rows // ROWS), cols // Q1_BLOCK
    return np.zeros((groups, n_blocks, STEPS), np.uint64), np.zeros((groups, n_blocks, ROWS), np.uint16)


@njit(cache=True, nogil=True, parallel=True)
def to_lanes(data: np.ndarray, words: np.ndarray, scales: np.ndarray) -> None:
    """Fill words / scales (from empty_lanes, zeroed) from a Q1_0 matrix as the file stores it
    (uint8 [rows, n_blocks*18]). Column 4*s + j of a block is bit j of nibble s of its 16 bit bytes."""
    rows, n_blocks = data.shape[0], words.shape[1]
    for g in prange(words.shape[0]):
        for i in range(min(ROWS, rows - g * ROWS)):
            r = g * ROWS + i
            shift = np.uint64(4 * i)
            for b in range(n_blocks):
                base = b * Q1_BLOCK_BYTES
                scales[g, b, i] = np.uint16(data[r, base]) | (np.uint16(data[r, base + 1]) << np.uint16(8))
                for s in range(STEPS):
                    nibble = (np.uint64(data[r, base + 2 + s // 2]) >> np.uint64(4 * (s % 2))) & np.uint64(15)
                    words[g, b, s] |= nibble << shift


@njit(cache=True, nogil=True, inline="always")
def _quantize_row(x: np.ndarray, xq: np.ndarray, xs: np.ndarray, corr: np.ndarray, factor: float) -> None:
    """One row: xq the int8 codes, xs[b] = factor * scale of 32-block b, corr[c] = sum of
    scale * sum(codes) over the 32-blocks of weight block c (len(xs) // len(corr) of them)."""
    per_corr = xs.shape[0] // corr.shape[0]
    for b in range(x.shape[0] // Q8_BLOCK):
        start = b * Q8_BLOCK
        largest = np.float32(0.0)
        for j in range(start, start + Q8_BLOCK):
            largest = max(largest, abs(x[j]))
        scale = np.float32(largest / 127.0)
        inverse = np.float32(1.0) / scale if scale > 0 else np.float32(0.0)
        total = 0
        for j in range(start, start + Q8_BLOCK):
            code = np.int8(round(x[j] * inverse))  # to nearest, ties to even
            xq[j] = code
            total += code
        xs[b] = np.float32(factor) * scale
        if b % per_corr == 0:
            corr[b // per_corr] = np.float32(0.0)
        corr[b // per_corr] += scale * np.float32(total)


@njit(cache=True, nogil=True)
def quantize_rows(x: np.ndarray, xq: np.ndarray, xs: np.ndarray, corr: np.ndarray, factor: float = 2.0) -> None:
    """x [T, cols] float32 -> int8 codes xq (scale = max|x| / 127 per 32 values), xs = factor * scale
    per 32 values, corr = sum over each weight block of scale * sum(codes): Q1_0 reads 2 * scale and
    128-column blocks, Q2_0 (q2_lanes) scale and 64-column blocks. Rows of xq, xs, corr past T are
    left alone (zeros pad the GEMM's last tile)."""
    for t in range(x.shape[0]):
        _quantize_row(x[t], xq[t], xs[t], corr[t], factor)


@njit(cache=True, nogil=True, parallel=True)
def quantize_rows_parallel(x: np.ndarray, xq: np.ndarray, xs: np.ndarray, corr: np.ndarray, factor: float = 2.0) -> None:
    """quantize_rows over the cores (a 512-row prompt)."""
    for t in prange(x.shape[0]):
        _quantize_row(x[t], xq[t], xs[t], corr[t], factor)


# The step for this process's path, fixed when gemv compiles. Numba's cache keys a compiled kernel
# on the target CPU, which the path follows (simd.KERNEL), so a cached gemv never has the other step.
_block_dot = simd.block_dot_avx2 if simd.KERNEL == "avx2" else simd.block_dot_avx512
_block_gemm = simd.block_gemm_avx2 if simd.KERNEL == "avx2" else simd.block_gemm_avx512
GEMM_TOKENS = simd.GEMM_TOKENS_AVX2 if simd.KERNEL == "avx2" else simd.GEMM_TOKENS  # rows per GEMM step


@njit(cache=True, nogil=True, parallel=True)
def gemv(words: np.ndarray, scales: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[r] = row r . x, x one float32 row rounded to int8 here (as quantize_rows); out has
    groups*16 entries. One call per product: decode makes ~110 a token, so no Python in between.
    Needs simd.AVAILABLE."""
    groups, n_blocks = words.shape[0], words.shape[1]
    xq = np.empty(x.shape[0], np.int8)
    xs2 = np.empty(x.shape[0] // Q8_BLOCK, np.float32)
    corr = np.empty(n_blocks, np.float32)
    _quantize_row(x, xq, xs2, corr, 2.0)
    flat_words, flat_scales = words.reshape(-1), scales.reshape(-1)
    for g in prange(groups):
        out[g * ROWS : (g + 1) * ROWS] = 0.0
        for b in range(n_blocks):
            at = g * n_blocks + b
            _block_dot(out, g * ROWS, flat_words, at * STEPS, flat_scales, at * ROWS, xq, b * Q1_BLOCK, xs2, b * 4, corr, b)


@njit(cache=True, nogil=True, parallel=True)
def gemm(words: np.ndarray, scales: np.ndarray, xq: np.ndarray, xs2: np.ndarray, corr: np.ndarray, out: np.ndarray) -> None:
    """out[t, r] = row r . activation row t, for xq [T, cols] with T a multiple of GEMM_TOKENS;
    out [T, groups*16]. Chunks of GEMM_CHUNK activation rows stay in cache while every row group
    passes; within a group, each weight step is expanded once for GEMM_TOKENS rows."""
    groups, n_blocks = words.shape[0], words.shape[1]
    n_tokens, cols, stride = xq.shape[0], xq.shape[1], out.shape[1]
    flat_words, flat_scales = words.reshape(-1), scales.reshape(-1)
    flat_x, flat_s, flat_c, flat_out = xq.reshape(-1), xs2.reshape(-1), corr.reshape(-1), out.reshape(-1)
    for chunk in range(0, n_tokens, GEMM_CHUNK):
        for g in prange(groups):
            for t0 in range(chunk, min(chunk + GEMM_CHUNK, n_tokens), GEMM_TOKENS):
                for t in range(t0, t0 + GEMM_TOKENS):
                    out[t, g * ROWS : (g + 1) * ROWS] = 0.0
                for b in range(n_blocks):
                    at = g * n_blocks + b
                    _block_gemm(
                        flat_out, t0 * stride + g * ROWS, stride, flat_words, at * STEPS, flat_scales, at * ROWS,
                        flat_x, t0 * cols + b * Q1_BLOCK, flat_s, (t0 * n_blocks + b) * 4, flat_c, t0 * n_blocks + b, n_blocks,
                    )


@njit(cache=True, nogil=True)
def dequantize(words: np.ndarray, scales: np.ndarray, row_start: int, row_stop: int, out: np.ndarray) -> None:
    """Rows [row_start, row_stop) as float32 into out[0 : row_stop-row_start] (single-threaded)."""
    for r in range(row_start, row_stop):
        g, i = divmod(r, ROWS)
        shift = np.uint64(4 * i)
        for b in range(words.shape[1]):
            h = scales[g, b, i]
            d = fp16_to_float(np.uint8(h & 0xFF), np.uint8(h >> 8))
            for s in range(STEPS):
                nibble = (words[g, b, s] >> shift) & np.uint64(15)
                for j in range(4):
                    out[r - row_start, b * Q1_BLOCK + 4 * s + j] = d if (nibble >> np.uint64(j)) & np.uint64(1) else -d


@njit(cache=True, nogil=True)
def embed(words: np.ndarray, scales: np.ndarray, tokens: np.ndarray, out: np.ndarray) -> None:
    """Embedding lookup: rows `tokens` as float32."""
    for t in range(tokens.shape[0]):
        dequantize(words, scales, tokens[t], tokens[t] + 1, out[t : t + 1])
