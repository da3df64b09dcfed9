"""Weight matrices: y = x @ W.T for a batch of rows x, whatever the storage type.

Q1_0 matrices stay 1-bit: their bytes are regrouped once at load (see kernels.py), never expanded.
One row of x (decode, or each row of a short prompt) goes through a GEMV kernel: int8 activations
where the CPU allows (Q8Vector), else the exact float lookup table. A longer batch (prefill) is
compute-bound, so tiles of rows are unpacked to float32 and handed to numpy's BLAS matmul, never the
whole matrix at once. Prefill tiles are spread over a pool of threads, each unpacking and
multiplying its own tile with a single-threaded BLAS: BLAS's own threads busy-wait between calls
and would steal the cores from the unpacking.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from engine import kernels, simd

GEMV_MAX_ROWS = 24  # up to this many input rows, one GEMV per row beats unpack + matmul (measured)
INT8_GEMV_MAX_ROWS = 64  # the same with the int8 GEMV (measured: 32 rows 0.9 s vs 1.7 s, 96 rows 2.4 vs 2.7)
TILE_BYTES = 2 << 20  # float32 rows unpacked per BLAS call (measured on pp58..pp512: 2 MB beat 8 MB)
JOBS_PER_MATRIX = 8  # runs of tiles handed to the pool: few enough to be cheap, enough to balance


_scratch = threading.local()


def tile_buffer(n_floats: int) -> np.ndarray:
    """A float32 buffer reused across calls on this thread: a fresh 8 MB array per matmul would
    page-fault its way through gigabytes of new memory during one prefill."""
    buffer = getattr(_scratch, "tile", None)
    if buffer is None or buffer.size < n_floats:
        buffer = _scratch.tile = np.empty(n_floats, dtype=np.float32)
    return buffer[:n_floats]


@dataclass
class Q8Vector:
    """An input row as the int8 GEMV reads it (kernels.quantize_q8)."""

    codes: np.ndarray
    negated: np.ndarray
    lane_scales: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Q8Vector:
        codes, negated = np.empty(len(x), np.int8), np.empty(len(x), np.int8)
        lane_scales = np.empty(len(x) // simd.LANE_WEIGHTS, np.float32)
        kernels.quantize_q8(x, codes, negated, lane_scales)
        return cls(codes, negated, lane_scales)


EncodedRow = Q8Vector | np.ndarray  # int8 codes, or the float sign table of build_sign_lut


class Q1Matrix:
    """A [rows, cols] Q1_0 matrix: the file's bytes, regrouped in row tiles (kernels.q1_tiles).

    int8_decode picks the GEMV: activations rounded to int8 (fast, needs simd.AVAILABLE) or the
    exact float lookup table.
    """

    def __init__(self, data: np.ndarray, cols: int, pool: ThreadPoolExecutor, int8_decode: bool = False) -> None:
        self.tiles = kernels.q1_tiles(data)
        self.rows, self.cols = data.shape[0], cols
        self.pool = pool
        self.int8_decode = int8_decode
        self.gemv_max_rows = INT8_GEMV_MAX_ROWS if int8_decode else GEMV_MAX_ROWS

    def encode(self, x: np.ndarray) -> EncodedRow:
        """One input row in the form this matrix's GEMV reads."""
        if self.int8_decode:
            return Q8Vector.of(x)
        lut = np.empty((self.cols // 8, 256), dtype=np.float32)
        kernels.build_sign_lut(x, lut)
        return lut

    def matvec(self, row: EncodedRow) -> np.ndarray:
        """Product with one encoded input row."""
        out = np.empty(self.rows, dtype=np.float32)
        if isinstance(row, Q8Vector):
            kernels.q1_gemv_q8(self.tiles, row.codes, row.negated, row.lane_scales, out)
        else:
            kernels.q1_gemv_lut(self.tiles, row.reshape(-1), out)
        return out

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """x @ W.T for x of shape [T, cols] -> [T, rows]."""
        if x.shape[0] <= self.gemv_max_rows:
            return np.stack([self.matvec(self.encode(row)) for row in x])
        out = np.empty((x.shape[0], self.rows), dtype=np.float32)
        tile_rows = max(1, TILE_BYTES // (4 * self.cols))
        starts = np.arange(0, self.rows, tile_rows)
        jobs = [(share, tile_rows) for share in np.array_split(starts, min(len(starts), JOBS_PER_MATRIX))]
        list(self.pool.map(lambda job: self._tiles_product(x, *job, out), jobs))  # re-raises errors
        return out

    def _tiles_product(self, x: np.ndarray, starts: np.ndarray, tile_rows: int, out: np.ndarray) -> None:
        """One worker's share: unpack each tile of rows into this thread's buffer, multiply it."""
        for start in starts:
            stop = min(int(start) + tile_rows, self.rows)
            tile = tile_buffer((stop - start) * self.cols).reshape(-1, self.cols)
            kernels.q1_dequantize(self.tiles, int(start), stop, tile)
            np.matmul(x, tile.T, out=out[:, start:stop])

    def rows_as_float(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), self.cols), dtype=np.float32)
        kernels.q1_embed(self.tiles, ids.astype(np.int64), out)
        return out


class DenseMatrix:
    """An F32 or F16 matrix, held as float32 (these are small or test-only in Bonsai files)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.rows, self.cols = self.data.shape

    def matmul(self, x: np.ndarray) -> np.ndarray:
        return x @ self.data.T

    def rows_as_float(self, ids: np.ndarray) -> np.ndarray:
        return self.data[ids]


Matrix = Q1Matrix | DenseMatrix
