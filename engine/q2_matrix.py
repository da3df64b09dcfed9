"""Q2Matrix: a ternary (Q2_0) weight matrix × activations, beside matrix.Q1Matrix.

Same plan as Q1_0: the file's bytes regrouped once at load (q2_kernels.q2_tiles), never expanded;
one input row goes through a GEMV (int8 activations where simd.AVAILABLE, else the exact float
table), a longer batch is unpacked tile by tile into float32 for BLAS on the prefill pool.
Both layouts (128 weights in 34 bytes, 64 in 18) run through the same kernels.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from engine import q2_kernels
from engine.matrix import GEMV_MAX_ROWS, INT8_GEMV_MAX_ROWS, tiled_product


@dataclass
class Q8Interleaved:
    """An input row as q2_gemv_q8 reads it (q2_kernels.quantize_q8_interleaved)."""

    codes: np.ndarray
    neg_sums: np.ndarray
    scales: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Q8Interleaved:
        lanes = len(x) // q2_kernels.Q2_GROUP * q2_kernels.LANES
        row = cls(np.empty(len(x), np.int8), np.empty(lanes, np.int32), np.empty(lanes, np.float32))
        q2_kernels.quantize_q8_interleaved(x, row.codes, row.neg_sums, row.scales)
        return row


class Q2Matrix:
    """A [rows, cols] Q2_0 matrix in either layout, told by its bytes per row."""

    def __init__(self, data: np.ndarray, cols: int, pool: ThreadPoolExecutor, int8_decode: bool = False) -> None:
        self.block_weights, block_bytes = q2_kernels.block_layout(cols, data.shape[1])
        self.tiles = q2_kernels.q2_tiles(data, block_bytes)
        self.rows, self.cols = data.shape[0], cols
        self.pool = pool
        self.int8_decode = int8_decode
        self.gemv_max_rows = INT8_GEMV_MAX_ROWS if int8_decode else GEMV_MAX_ROWS

    def encode(self, x: np.ndarray) -> Q8Interleaved | np.ndarray:
        """One input row in the form this matrix's GEMV reads."""
        if self.int8_decode:
            return Q8Interleaved.of(x)
        lut = np.empty((self.cols // 4, 256), dtype=np.float32)
        q2_kernels.build_code_lut(x, lut)
        return lut

    def matvec(self, row: Q8Interleaved | np.ndarray) -> np.ndarray:
        """Product with one encoded input row."""
        out = np.empty(self.rows, dtype=np.float32)
        if isinstance(row, Q8Interleaved):
            q2_kernels.q2_gemv_q8(self.tiles, row.codes, row.neg_sums, row.scales, out)
        else:
            q2_kernels.q2_gemv_lut(self.tiles, row.reshape(-1), out)
        return out

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """x @ W.T for x of shape [T, cols] -> [T, rows]."""
        if x.shape[0] <= self.gemv_max_rows:
            return np.stack([self.matvec(self.encode(row)) for row in x])
        return tiled_product(x, self.rows, self.pool, lambda start, stop, tile: q2_kernels.q2_dequantize(self.tiles, start, stop, tile))

    def rows_as_float(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), self.cols), dtype=np.float32)
        q2_kernels.q2_embed(self.tiles, ids.astype(np.int64), out)
        return out
