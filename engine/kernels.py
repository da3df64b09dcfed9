"""Numba kernels: the only hot code. Plain arrays in, arrays out, no Python objects inside.

Q1_0 layout (GGML type 41): a row of n weights is n/128 blocks of 18 bytes,
    [ fp16 scale d (2 bytes, little-endian) | 16 bytes of sign bits ]
and weight j of a block is +d if bit (j % 8) of bit-byte (j // 8) is set (LSB first), else -d.

This module holds the exact (float32) matrix path; the int8 kernels, on another layout, are in
lanes.py (with simd.py). The exact GEMV (gemv_lut, shared with Q2_0): instead of testing bits, a lookup table
built once per input vector: for each group of 8 activations, the 256 possible signed sums. Each
weight byte then costs one table load and one add (the T-MAC idea). ~38 G weights/s.

The exact path regroups each matrix into tiles of ROW_TILE rows, stored block column by block
column ([tile, block, row in tile, 18 bytes]: same bytes, other order): the kernel reads the
weights sequentially while the 16 KB slice of the 256 KB table for one block column stays in L1.
That is 2.3x faster than rows.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


Q1_BLOCK = 128  # weights per block
Q1_BLOCK_BYTES = 18  # 2 bytes scale + 16 bytes bits
Q1_BITS_BYTES = 16
ROW_TILE = 64  # rows per tile of the regrouped layout (measured: 16 -> 29, 64 -> 43 G weights/s)


# fp16 exponent field -> its power of two (field 0: subnormals, 2^-24 per mantissa unit)
FP16_POW2 = np.array([2.0**-24] + [2.0 ** (e - 25) for e in range(1, 32)], dtype=np.float32)


@njit(cache=True, inline="always")
def fp16_to_float(lo: np.uint8, hi: np.uint8) -> np.float32:
    """IEEE half from its two little-endian bytes (Numba has no float16 arithmetic; no inf/nan here)."""
    h = np.int32(lo) | (np.int32(hi) << 8)
    exponent = (h >> 10) & 0x1F
    mantissa = (h & 0x3FF) | (np.int32(exponent != 0) << 10)  # implicit leading 1 for normals
    value = np.float32(mantissa) * FP16_POW2[exponent]
    return -value if h & 0x8000 else value


# ---- Q1_0 matrix-vector (exact decode) ----------------------------------------------------------


@njit(cache=True, nogil=True, parallel=True)
def build_sign_lut(x: np.ndarray, lut: np.ndarray) -> None:
    """lut[g, b] = sum over j<8 of (+x[8g+j] if bit j of b else -x[8g+j])."""
    n_groups = x.shape[0] // 8
    for g in prange(n_groups):
        base = 8 * g
        total = np.float32(0.0)
        for j in range(8):
            total += x[base + j]
        lut[g, 0] = -total
        # entries with highest bit j = the entries below 2^j, with activation j's sign flipped to +
        for j in range(8):
            flip = np.float32(2.0) * x[base + j]
            half = 1 << j
            for b in range(half):
                lut[g, half + b] = lut[g, b] + flip


def q1_tiles(rows_bytes: np.ndarray) -> np.ndarray:
    """Regroup a Q1_0 matrix (uint8 [rows, n_blocks*18]) as [tiles, n_blocks, ROW_TILE, 18].

    The last tile is padded with zero blocks (scale 0: they contribute nothing).
    """
    rows, row_bytes = rows_bytes.shape
    n_tiles = -(-rows // ROW_TILE)
    padded = rows_bytes
    if n_tiles * ROW_TILE != rows:
        padded = np.zeros((n_tiles * ROW_TILE, row_bytes), dtype=np.uint8)
        padded[:rows] = rows_bytes
    blocks = padded.reshape(n_tiles, ROW_TILE, row_bytes // Q1_BLOCK_BYTES, Q1_BLOCK_BYTES)
    return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3))


@njit(cache=True, nogil=True, inline="always")
def _lut_sum(lut: np.ndarray, base: int, block: np.ndarray, code_bytes: int) -> np.float32:
    """The table sums of one block's code bytes (block[2:2 + code_bytes])."""
    # four partial sums: float adds are a latency chain, one sum would stall on each
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    for k in range(0, code_bytes, 4):
        s0 += lut[base + k * 256 + block[2 + k]]
        s1 += lut[base + (k + 1) * 256 + block[3 + k]]
        s2 += lut[base + (k + 2) * 256 + block[4 + k]]
        s3 += lut[base + (k + 3) * 256 + block[5 + k]]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True, parallel=True)
def gemv_lut(tiles: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """out[r] = dot(row r, x) for a tiled matrix of blocks [fp16 d | code bytes] and lut the table of
    the 256 sums each code byte can select (flattened): Q1_0 with build_sign_lut(x) (8 weights a
    byte), Q2_0 with q2_kernels.build_code_lut(x) (4 weights a byte)."""
    n_tiles, n_blocks, code_bytes = tiles.shape[0], tiles.shape[1], tiles.shape[3] - 2
    rows = out.shape[0]
    for t in prange(n_tiles):
        acc = np.zeros(ROW_TILE, dtype=np.float32)
        for blk in range(n_blocks):
            base = blk * code_bytes * 256  # this block column's slice of the table
            for r in range(ROW_TILE):
                block = tiles[t, blk, r]
                # the byte count as a constant, so LLVM unrolls the loop (3x faster than a variable count):
                # 16 (Q1_0, Q2_0 g64) or 32 (Q2_0 g128)
                total = _lut_sum(lut, base, block, 16) if code_bytes == 16 else _lut_sum(lut, base, block, 32)
                acc[r] += fp16_to_float(block[0], block[1]) * total
        for r in range(min(ROW_TILE, rows - t * ROW_TILE)):
            out[t * ROW_TILE + r] = acc[r]


@njit(cache=True, nogil=True)
def q1_dequantize(tiles: np.ndarray, row_start: int, row_stop: int, out: np.ndarray) -> None:
    """Rows [row_start, row_stop) of a tiled Q1_0 matrix as float32 into out[0 : row_stop-row_start].

    Single-threaded and GIL-free: prefill runs one of these per worker thread, each on its own tile.
    """
    for i in range(row_stop - row_start):
        t, r = divmod(row_start + i, ROW_TILE)
        for blk in range(tiles.shape[1]):
            block = tiles[t, blk, r]
            d = fp16_to_float(block[0], block[1])
            for j in range(Q1_BLOCK):
                bit = (block[2 + (j >> 3)] >> (j & 7)) & 1
                out[i, blk * Q1_BLOCK + j] = d * np.float32(2 * np.int32(bit) - 1)


@njit(cache=True, nogil=True)
def q1_embed(tiles: np.ndarray, tokens: np.ndarray, out: np.ndarray) -> None:
    """Embedding lookup: dequantize the rows `tokens` of a tiled Q1_0 table."""
    for t in range(tokens.shape[0]):
        q1_dequantize(tiles, tokens[t], tokens[t] + 1, out[t : t + 1])


# ---- normalisation, activation ------------------------------------------------------------


@njit(cache=True, nogil=True)
def rmsnorm_rows(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray) -> None:
    """RMSNorm of each row of a 2-D array (weight has the row length)."""
    n = x.shape[1]
    for t in range(x.shape[0]):
        ss = 0.0
        for i in range(n):
            ss += x[t, i] * x[t, i]
        scale = 1.0 / math.sqrt(ss / n + eps)
        for i in range(n):
            out[t, i] = x[t, i] * scale * weight[i]


@njit(cache=True, nogil=True, inline="always")
def _silu_mul_row(gate: np.ndarray, up: np.ndarray) -> None:
    one = np.float32(1.0)
    for i in range(gate.shape[0]):
        g = gate[i]
        gate[i] = g / (one + math.exp(-g)) * up[i]  # float32 throughout (expf): half the time of float64


@njit(cache=True, nogil=True)
def _silu_mul_serial(gate: np.ndarray, up: np.ndarray) -> None:
    for t in range(gate.shape[0]):
        _silu_mul_row(gate[t], up[t])


@njit(cache=True, nogil=True, parallel=True)
def _silu_mul_parallel(gate: np.ndarray, up: np.ndarray) -> None:
    for t in prange(gate.shape[0]):
        _silu_mul_row(gate[t], up[t])


def silu_mul(gate: np.ndarray, up: np.ndarray) -> None:
    """gate <- silu(gate) * up (SwiGLU), in place; a batch of rows over every core."""
    (_silu_mul_parallel if gate.shape[0] > 1 else _silu_mul_serial)(gate, up)


# ---- rotary embedding ---------------------------------------------------------------------


def rope_frequencies(
    head_dim: int,
    base: float,
    factor: float = 1.0,
    original_context: int = 0,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
) -> np.ndarray:
    """Angle per position for each of the head_dim/2 rotated pairs, with YaRN when factor > 1.

    YaRN (as llama.cpp applies it, at every length): a pair whose wavelength is short compared with
    the original context keeps its frequency; a long one is interpolated (divided by factor); pairs
    in between ramp linearly, over the dims set by beta_fast / beta_slow.
    """
    half = head_dim // 2
    theta = base ** (-np.arange(half, dtype=np.float64) * 2.0 / head_dim)
    if factor <= 1.0:
        return theta

    def corr_dim(beta: float) -> float:
        return head_dim * math.log(original_context / (beta * 2 * math.pi)) / (2 * math.log(base))

    low = max(0.0, math.floor(corr_dim(beta_fast)))
    high = min(head_dim - 1.0, math.ceil(corr_dim(beta_slow)))
    ramp = 1.0 - np.clip((np.arange(half) - low) / max(0.001, high - low), 0.0, 1.0)
    return theta * (ramp + (1.0 - ramp) / factor)


def rope_table(frequencies: np.ndarray, start_pos: int, n_positions: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin for positions start_pos.., shape [n_positions, head_dim/2], times YaRN's magnitude scale.

    Computed per forward pass (a few microseconds) rather than tabled for the whole 32k context.
    """
    angles = np.arange(start_pos, start_pos + n_positions, dtype=np.float64)[:, None] * frequencies[None, :]
    return (np.cos(angles) * scale).astype(np.float32), (np.sin(angles) * scale).astype(np.float32)


@njit(cache=True, nogil=True)
def rope_neox(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> None:
    """Rotate x[t, head, :] in place by row t of rope_table; NEOX pairs dims (i, i + head_dim/2)."""
    half = x.shape[2] // 2
    for t in range(x.shape[0]):
        c = cos[t]
        s = sin[t]
        for h in range(x.shape[1]):
            for i in range(half):
                a = x[t, h, i]
                b = x[t, h, i + half]
                x[t, h, i] = a * c[i] - b * s[i]
                x[t, h, i + half] = a * s[i] + b * c[i]


# ---- sampling -----------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def top_k_ids(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, in no particular order (NaNs never enter).

    One pass keeping the best k in a min-heap: over 151k logits, 10x faster than np.argpartition,
    which was 1.5 ms of every sampled token.
    """
    best = np.empty(k, dtype=values.dtype)
    ids = np.empty(k, dtype=np.int64)
    size = 0
    for i in range(values.shape[0]):
        v = values[i]
        if math.isnan(v):
            continue
        if size < k:  # fill: sift the new entry up
            j = size
            size += 1
            while j > 0 and best[(j - 1) // 2] > v:
                best[j], ids[j] = best[(j - 1) // 2], ids[(j - 1) // 2]
                j = (j - 1) // 2
            best[j], ids[j] = v, i
        elif v > best[0]:  # beats the weakest kept: replace the root, sift it down
            j = 0
            while True:
                child = 2 * j + 1
                if child >= k:
                    break
                if child + 1 < k and best[child + 1] < best[child]:
                    child += 1
                if best[child] >= v:
                    break
                best[j], ids[j] = best[child], ids[child]
                j = child
            best[j], ids[j] = v, i
    return ids[:size]

