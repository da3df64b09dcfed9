"""Q2Matrix: a ternary (Q2_0) weight matrix × activations, beside matrix.Q1Matrix.

Same plan as Q1_0, in either file layout (128 weights in 34 bytes, 64 in 18):
- int8 path (default, where simd.AVAILABLE): both layouts repacked at load into one rows-in-lanes
  layout (q2_lanes.py); activations rounded to int8 per 32 values; one row -> the lanes GEMV, a
  batch -> the int8 GEMM (AVX-512 VNNI or AVX2 steps, q2_simd.py).
- exact path (exact=True, or no int8 kernel): the file's blocks in row tiles (q2_kernels.q2_tiles),
  float lookup-table GEMV for up to GEMV_MAX_ROWS rows, beyond that unpack + BLAS on the pool.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engine import kernels, q2_kernels, q2_lanes
from engine.matrix import GEMV_MAX_ROWS, PARALLEL_QUANTIZE_ROWS, kernel_names, tiled_product


class Q2Matrix:
    """A [rows, cols] Q2_0 matrix in either layout, told by its bytes per row."""

    def __init__(self, data: np.ndarray, cols: int, pool: ThreadPoolExecutor, int8: bool = False) -> None:
        self.block_weights, block_bytes = q2_kernels.block_layout(cols, data.shape[1])
        self.rows, self.cols = data.shape[0], cols
        self.pool = pool
        self.int8 = int8
        if int8:
            self.words, self.scales = q2_lanes.empty_lanes(self.rows, cols)
            q2_lanes.to_lanes(data, self.block_weights, self.words, self.scales)
            self.padded_rows = self.words.shape[0] * q2_lanes.ROWS
        else:
            self.tiles = q2_kernels.q2_tiles(data, block_bytes)

    def kernel_names(self) -> dict[str, str]:
        """The kernels this matrix runs, for `bench --json` ("decode", "prefill")."""
        return {key: f"{name} (Q2_0)" for key, name in kernel_names(self.int8).items()}

    def encode(self, x: np.ndarray) -> np.ndarray:
        """One input row in the form the exact GEMV reads (the float code table)."""
        lut = np.empty((self.cols // 4, 256), dtype=np.float32)
        q2_kernels.build_code_lut(x, lut)
        return lut

    def matvec(self, row: np.ndarray) -> np.ndarray:
        """Product with one input row: float32 (int8 path) or encoded (exact path)."""
        if self.int8:
            out = np.empty(self.padded_rows, dtype=np.float32)
            q2_lanes.gemv(self.words, self.scales, row, out)
            return out[: self.rows]
        out = np.empty(self.rows, dtype=np.float32)
        kernels.gemv_lut(self.tiles, row.reshape(-1), out)
        return out

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """x @ W.T for x of shape [T, cols] -> [T, rows]."""
        if x.shape[0] == 1:  # decode
            return self.matvec(x[0] if self.int8 else self.encode(x[0]))[None, :]
        if self.int8:  # a batch: the int8 GEMM
            codes, xs, corr = q2_lanes.quantize(x, q2_lanes.GEMM_TOKENS, x.shape[0] >= PARALLEL_QUANTIZE_ROWS)
            out = np.empty((codes.shape[0], self.padded_rows), dtype=np.float32)
            q2_lanes.gemm(self.words, self.scales, codes, xs, corr, out)
            return out[: x.shape[0], : self.rows]
        if x.shape[0] <= GEMV_MAX_ROWS:
            return np.stack([self.matvec(self.encode(row)) for row in x])
        return tiled_product(x, self.rows, self.pool, lambda start, stop, tile: q2_kernels.q2_dequantize(self.tiles, start, stop, tile))

    def rows_as_float(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), self.cols), dtype=np.float32)
        if self.int8:
            q2_lanes.embed(self.words, self.scales, ids.astype(np.int64), out)
        else:
            q2_kernels.q2_embed(self.tiles, ids.astype(np.int64), out)
        return out
