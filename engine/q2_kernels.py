"""Numba kernels for Q2_0 (GGML type 42), the ternary Bonsai models' weights.

A row of n weights is blocks of 2-bit codes after an fp16 scale d, in one of two layouts:
    PrismML's (the released files)   128 weights in 34 bytes: [ d | 32 bytes of codes ]
    mainline llama.cpp's ("g64")      64 weights in 18 bytes: [ d | 16 bytes of codes ]
Weight j of a block is (q - 1) * d for the code q = (codes[j // 4] >> 2 * (j % 4)) & 3, lowest bits
first. Ternary files only use q = 0, 1, 2; q = 3 (+2d) decodes as llama.cpp decodes it.
The kernels read both layouts: a block's size is the last dimension of the tiled matrix.

This module holds the exact (float32) path, as kernels.py does for Q1_0: a matrix is regrouped at
load into tiles of ROW_TILE rows stored block column by block column; one row goes through a float
table of the 256 sums each code byte (4 weights) can make with its 4 activations, built once per
input vector (kernels.gemv_lut, shared with Q1_0: one table load and one add per byte); a batch unpacks tiles to float32
for BLAS (q2_dequantize). The int8 kernels repack both layouts into rows in lanes (q2_lanes.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.kernels import ROW_TILE, fp16_to_float

LAYOUTS = {"g128": (128, 34), "g64": (64, 18)}  # weights and bytes per block
# the four weights (over a unit scale) of every code byte: a table beats four shifts when unpacking
BYTE_VALUES = (((np.arange(256)[:, None] >> np.array([0, 2, 4, 6])) & 3) - 1).astype(np.float32)


def block_layout(cols: int, row_bytes: int) -> tuple[int, int]:
    """(weights, bytes) per block of a Q2_0 matrix whose rows of `cols` weights take `row_bytes`."""
    for weights, nbytes in LAYOUTS.values():
        if cols % weights == 0 and cols // weights * nbytes == row_bytes:
            return weights, nbytes
    raise ValueError(f"{row_bytes} bytes per row of {cols} weights fit neither Q2_0 layout")


def q2_tiles(rows_bytes: np.ndarray, block_bytes: int) -> np.ndarray:
    """Regroup a Q2_0 matrix (uint8 [rows, n_blocks*block_bytes]) as [tiles, n_blocks, ROW_TILE, block_bytes].

    The last tile is padded with zero blocks (scale 0: they contribute nothing).
    """
    rows, row_bytes = rows_bytes.shape
    n_tiles = -(-rows // ROW_TILE)
    padded = rows_bytes
    if n_tiles * ROW_TILE != rows:
        padded = np.zeros((n_tiles * ROW_TILE, row_bytes), dtype=np.uint8)
        padded[:rows] = rows_bytes
    blocks = padded.reshape(n_tiles, ROW_TILE, row_bytes // block_bytes, block_bytes)
    return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3))


# ---- exact decode: the table for kernels.gemv_lut -------------------------------------------------------


@njit(cache=True, nogil=True, parallel=True)
def build_code_lut(x: np.ndarray, lut: np.ndarray) -> None:
    """lut[g, b] = Σ_{j<4} (((b >> 2j) & 3) - 1) · x[4g + j]: every sum a code byte can select."""
    for g in prange(x.shape[0] // 4):
        low = np.empty(16, dtype=np.float32)  # codes of activations 0 and 1
        high = np.empty(16, dtype=np.float32)  # codes of activations 2 and 3
        for a in range(16):
            low[a] = np.float32((a & 3) - 1) * x[4 * g] + np.float32((a >> 2) - 1) * x[4 * g + 1]
            high[a] = np.float32((a & 3) - 1) * x[4 * g + 2] + np.float32((a >> 2) - 1) * x[4 * g + 3]
        for h in range(16):
            for lo in range(16):
                lut[g, 16 * h + lo] = low[lo] + high[h]


# ---- prefill and embeddings ------------------------------------------------------------------


@njit(cache=True, nogil=True)
def q2_dequantize(tiles: np.ndarray, row_start: int, row_stop: int, out: np.ndarray) -> None:
    """Rows [row_start, row_stop) of a tiled Q2_0 matrix as float32 into out[0 : row_stop-row_start].

    Single-threaded and GIL-free: prefill runs one of these per worker thread, each on its own tile.
    """
    block_bytes = tiles.shape[3]
    block_weights = 4 * (block_bytes - 2)
    for i in range(row_stop - row_start):
        t, r = divmod(row_start + i, ROW_TILE)
        for blk in range(tiles.shape[1]):
            block = tiles[t, blk, r]
            d = fp16_to_float(block[0], block[1])
            base = blk * block_weights
            for k in range(block_bytes - 2):
                values = BYTE_VALUES[block[2 + k]]
                for s in range(4):
                    out[i, base + 4 * k + s] = d * values[s]


@njit(cache=True, nogil=True)
def q2_embed(tiles: np.ndarray, tokens: np.ndarray, out: np.ndarray) -> None:
    """Embedding lookup: dequantize the rows `tokens` of a tiled Q2_0 table."""
    for t in range(tokens.shape[0]):
        q2_dequantize(tiles, tokens[t], tokens[t] + 1, out[t : t + 1])
