"""Q2_0 matrices in a "rows in lanes" layout, and the int8 kernels on it (decode GEMV, prefill GEMM).

Both file layouts (PrismML's 128 weights in 34 bytes, mainline's 64 in 18) are repacked at load
(to_lanes) into one: rows in groups of 16 (the last padded with zero rows, scale 0), and per group
and 64-column block
    words  [groups, n_blocks, 32] uint64: word 2s = the codes' low bits, word 2s + 1 their high bits,
                                          bit 4*i + j = row 16*g + i, column 64*b + 4*s + j
    scales [groups, n_blocks, 16] uint16: each row's fp16 d (a 128-weight block's d serves both halves)
2 bits a weight as in the file, plus one fp16 per 64 weights instead of per 128 for PrismML's files
(+6 %). Activations are rounded to int8 per 32 values as for Q1_0 (lanes.quantize_rows, here with the
scale itself and a correction per 64 columns); the kernels (steps in q2_simd.py) are exact integer
sums of those codes, scaled in float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine import lanes, q2_simd, simd
from engine.kernels import fp16_to_float

ROWS = simd.ROWS
BLOCK = q2_simd.BLOCK
WORDS = q2_simd.WORDS
Q8_BLOCK = lanes.Q8_BLOCK
GEMM_CHUNK = lanes.GEMM_CHUNK
# bits 0, 2, 4, 6 (low) and 1, 3, 5, 7 (high) of a code byte, as nibbles: its 4 codes' two bit planes
_CODE_BYTES = np.arange(256)
LOW_PLANE = sum(((_CODE_BYTES >> (2 * j)) & 1) << j for j in range(4)).astype(np.uint64)
HIGH_PLANE = sum(((_CODE_BYTES >> (2 * j + 1)) & 1) << j for j in range(4)).astype(np.uint64)


def empty_lanes(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    groups, n_blocks = -(-rows // ROWS), cols // BLOCK
    return np.zeros((groups, n_blocks, WORDS), np.uint64), np.zeros((groups, n_blocks, ROWS), np.uint16)


@njit(cache=True, nogil=True, parallel=True)
def to_lanes(data: np.ndarray, block_weights: int, words: np.ndarray, scales: np.ndarray) -> None:
    """Fill words / scales (from empty_lanes: padding rows stay zero) from a Q2_0 matrix as the file stores it
    (uint8 [rows, n_file_blocks * (2 + block_weights/4)]): weight 4k + j of a file block is bits
    2j, 2j+1 of its code byte k."""
    rows, n_blocks = data.shape[0], words.shape[1]
    block_bytes = 2 + block_weights // 4
    for g in prange(words.shape[0]):
        in_group = min(ROWS, rows - g * ROWS)
        for b in range(n_blocks):
            file_block, first = divmod(b * BLOCK, block_weights)
            base = file_block * block_bytes
            for i in range(in_group):
                r = g * ROWS + i
                scales[g, b, i] = np.uint16(data[r, base]) | (np.uint16(data[r, base + 1]) << np.uint16(8))
            for s in range(q2_simd.STEPS):  # each word built in a register from its 16 rows, stored once
                low, high = np.uint64(0), np.uint64(0)
                for i in range(in_group):
                    code_byte = data[g * ROWS + i, base + 2 + first // 4 + s]
                    low |= LOW_PLANE[code_byte] << np.uint64(4 * i)
                    high |= HIGH_PLANE[code_byte] << np.uint64(4 * i)
                words[g, b, 2 * s] = low
                words[g, b, 2 * s + 1] = high


def quantize(x: np.ndarray, pad: int = 1, parallel: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes int8 [T_padded, cols], scales [T_padded, cols/32], corrections [T_padded, cols/64]) for
    activation rows x, zero rows padding T to a multiple of `pad` (the GEMM's tile)."""
    rows, cols = x.shape
    padded = -(-rows // pad) * pad
    zeros_or_empty = np.zeros if padded > rows else np.empty  # padding rows must be zero
    codes = zeros_or_empty((padded, cols), np.int8)
    xs = zeros_or_empty((padded, cols // Q8_BLOCK), np.float32)
    corr = zeros_or_empty((padded, cols // BLOCK), np.float32)
    (lanes.quantize_rows_parallel if parallel else lanes.quantize_rows)(x, codes, xs, corr, 1.0)
    return codes, xs, corr


# The steps for this process's path, fixed when the kernels compile (see lanes.py: Numba's cache
# keys a kernel on the target CPU, which the path follows).
_block_dot = q2_simd.block_dot_avx2 if simd.KERNEL == "avx2" else q2_simd.block_dot_avx512
_block_gemm = q2_simd.block_gemm_avx2 if simd.KERNEL == "avx2" else q2_simd.block_gemm_avx512
GEMM_TOKENS = q2_simd.GEMM_TOKENS["avx2" if simd.KERNEL == "avx2" else "avx512"]


@njit(cache=True, nogil=True, parallel=True)
def gemv(words: np.ndarray, scales: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """out[r] = row r . x, x one float32 row rounded to int8 here (as quantize); out has groups*16
    entries. Needs simd.AVAILABLE."""
    groups, n_blocks = words.shape[0], words.shape[1]
    xq = np.empty(x.shape[0], np.int8)
    xs = np.empty(x.shape[0] // Q8_BLOCK, np.float32)
    corr = np.empty(n_blocks, np.float32)
    lanes._quantize_row(x, xq, xs, corr, 1.0)
    flat_words, flat_scales = words.reshape(-1), scales.reshape(-1)
    for g in prange(groups):
        out[g * ROWS : (g + 1) * ROWS] = 0.0
        for b in range(n_blocks):
            at = g * n_blocks + b
            _block_dot(out, g * ROWS, 0, flat_words, at * WORDS, flat_scales, at * ROWS, xq, b * BLOCK, xs, b * 2, corr, b, n_blocks)


@njit(cache=True, nogil=True, parallel=True)
def gemm(words: np.ndarray, scales: np.ndarray, xq: np.ndarray, xs: np.ndarray, corr: np.ndarray, out: np.ndarray) -> None:
    """out[t, r] = row r . activation row t, for xq [T, cols] with T a multiple of GEMM_TOKENS;
    out [T, groups*16]. As lanes.gemm: chunks of GEMM_CHUNK activation rows stay in cache while
    every row group passes; each weight step becomes code bytes once for GEMM_TOKENS rows."""
    groups, n_blocks = words.shape[0], words.shape[1]
    n_tokens, cols, stride = xq.shape[0], xq.shape[1], out.shape[1]
    flat_words, flat_scales = words.reshape(-1), scales.reshape(-1)
    flat_x, flat_s, flat_c, flat_out = xq.reshape(-1), xs.reshape(-1), corr.reshape(-1), out.reshape(-1)
    for chunk in range(0, n_tokens, GEMM_CHUNK):
        for g in prange(groups):
            for t0 in range(chunk, min(chunk + GEMM_CHUNK, n_tokens), GEMM_TOKENS):
                for t in range(t0, t0 + GEMM_TOKENS):
                    out[t, g * ROWS : (g + 1) * ROWS] = 0.0
                for b in range(n_blocks):
                    at = g * n_blocks + b
                    _block_gemm(
                        flat_out, t0 * stride + g * ROWS, stride, flat_words, at * WORDS, flat_scales, at * ROWS,
                        flat_x, t0 * cols + b * BLOCK, flat_s, (t0 * n_blocks + b) * 2, flat_c, t0 * n_blocks + b, n_blocks,
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
            for s in range(q2_simd.STEPS):
                low = (words[g, b, 2 * s] >> shift) & np.uint64(15)
                high = (words[g, b, 2 * s + 1] >> shift) & np.uint64(15)
                for j in range(4):
                    code = ((low >> np.uint64(j)) & np.uint64(1)) + 2 * ((high >> np.uint64(j)) & np.uint64(1))
                    out[r - row_start, b * BLOCK + 4 * s + j] = d * np.float32(np.int64(code) - 1)


@njit(cache=True, nogil=True)
def embed(words: np.ndarray, scales: np.ndarray, tokens: np.ndarray, out: np.ndarray) -> None:
    """Embedding lookup: rows `tokens` as float32."""
    for t in range(tokens.shape[0]):
        dequantize(words, scales, tokens[t], tokens[t] + 1, out[t : t + 1])
