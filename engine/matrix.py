"""Weight matrices: y = x @ W.T for a batch of rows x, whatever the storage type.

Q1_0 matrices stay 1-bit: their bytes are regrouped once at load, never expanded for good.
- int8 path (default, where simd.AVAILABLE): rows in lanes (lanes.py). Activations are rounded to
  int8 per 32 values; one row goes through the lanes GEMV, a batch through the int8 GEMM (AVX-512
  VNNI or AVX2 steps, simd.py).
- exact path (exact=True, or no int8 kernel): row tiles (kernels.py), float lookup-table GEMV for
  up to 24 rows, beyond that tiles of rows unpacked to float32 and multiplied by numpy's BLAS.
Unpack + BLAS tiles are spread over a pool of threads, each with a single-threaded BLAS: BLAS's
own threads busy-wait between calls and would steal the cores from the unpacking.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from engine import kernels, lanes, simd

GEMV_MAX_ROWS = 24  # up to this many input rows, one GEMV per row beats unpack + matmul (measured)
PARALLEL_QUANTIZE_ROWS = 64  # from this many rows, rounding activations to int8 uses every core
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
class Q8Rows:
    """Input rows as the int8 kernels read them (lanes.quantize_rows), padded with zero rows to
    a multiple of `pad` (the GEMM's tile)."""

    codes: np.ndarray  # int8 [T_padded, cols]
    double_scales: np.ndarray  # float32 [T_padded, cols/32]: 2 x each 32-block's scale
    corrections: np.ndarray  # float32 [T_padded, cols/128]: sum of scale x sum(codes) per 128-block

    @classmethod
    def of(cls, x: np.ndarray, pad: int = 1) -> Q8Rows:
        rows, cols = x.shape
        padded = -(-rows // pad) * pad
        zeros_or_empty = np.zeros if padded > rows else np.empty  # padding rows must be zero
        new = cls(zeros_or_empty((padded, cols), np.int8), zeros_or_empty((padded, cols // lanes.Q8_BLOCK), np.float32),
                  zeros_or_empty((padded, cols // kernels.Q1_BLOCK), np.float32))
        quantize = lanes.quantize_rows_parallel if rows >= PARALLEL_QUANTIZE_ROWS else lanes.quantize_rows
        quantize(x, new.codes, new.double_scales, new.corrections)
        return new


@functools.cache
def blas_kernels() -> str:
    """The CPU whose kernels OpenBLAS runs (OPENBLAS_CORETYPE, which BONSAI_TUI_CPU sets, can lower it)."""
    from threadpoolctl import threadpool_info

    found = [info.get("architecture") for info in threadpool_info() if info.get("user_api") == "blas"]
    return found[0] if found and found[0] else "unknown"


def kernel_names(int8: bool) -> dict[str, str]:
    """Which kernels a Q1Matrix or Q2Matrix with this setting runs (the same families for both)."""
    if not int8:
        return {"decode": "float32 lookup table", "prefill": f"float32 unpack + BLAS sgemm ({blas_kernels()})"}
    isa = {"avx512": "AVX-512 VNNI", "avx2": "AVX2"}[simd.KERNEL]
    return {"decode": f"int8 {isa} GEMV", "prefill": f"int8 {isa} GEMM"}


def tiled_product(x: np.ndarray, rows: int, pool: ThreadPoolExecutor, dequantize) -> np.ndarray:
    """x @ W.T for a batch [T, cols] of a packed [rows, cols] matrix, by tiles of its rows: each
    `dequantize(start, stop, tile)` unpacks rows start..stop to float32 in the thread's buffer and
    BLAS multiplies it. The tiles are shared among the pool's threads (the exact path's prefill)."""
    cols = x.shape[1]
    out = np.empty((x.shape[0], rows), dtype=np.float32)
    tile_rows = max(1, TILE_BYTES // (4 * cols))
    starts = np.arange(0, rows, tile_rows)

    def share(job_starts: np.ndarray) -> None:
        for start in job_starts:
            stop = min(int(start) + tile_rows, rows)
            tile = tile_buffer((stop - start) * cols).reshape(-1, cols)
            dequantize(int(start), stop, tile)
            np.matmul(x, tile.T, out=out[:, start:stop])

    list(pool.map(share, np.array_split(starts, min(len(starts), JOBS_PER_MATRIX))))  # re-raises errors
    return out


class Q1Matrix:
    """A [rows, cols] Q1_0 matrix, 1-bit in memory in one of two layouts of the file's bytes.

    int8=True (needs simd.AVAILABLE): rows in lanes (lanes.py), activations rounded to int8: one
    row -> lanes GEMV, a batch -> the int8 GEMM.
    int8=False (exact): row tiles (kernels.q1_tiles): float lookup-table GEMV, unpack + BLAS.
    """

    def __init__(self, data: np.ndarray, cols: int, pool: ThreadPoolExecutor, int8: bool = False) -> None:
        self.rows, self.cols = data.shape[0], cols
        self.pool = pool
        self.int8 = int8
        if int8:
            self.words, self.scales = lanes.empty_lanes(self.rows, cols)
            lanes.to_lanes(data, self.words, self.scales)
            self.padded_rows = self.words.shape[0] * lanes.ROWS
        else:
            self.tiles = kernels.q1_tiles(data)
            self.gemv_max_rows = GEMV_MAX_ROWS

    def kernel_names(self) -> dict[str, str]:
        """The kernels this matrix runs, for `bench --json` ("decode", "prefill")."""
        return {key: f"{name} (Q1_0)" for key, name in kernel_names(self.int8).items()}

    def encode(self, x: np.ndarray) -> np.ndarray:
        """One input row in the form the exact GEMV reads (the float sign table)."""
        lut = np.empty((self.cols // 8, 256), dtype=np.float32)
        kernels.build_sign_lut(x, lut)
        return lut

    def matvec(self, row: np.ndarray) -> np.ndarray:
        """Product with one input row: float32 (int8 path) or encoded (exact path)."""
        if self.int8:
            out = np.empty(self.padded_rows, dtype=np.float32)
            lanes.gemv(self.words, self.scales, row, out)
            return out[: self.rows]
        out = np.empty(self.rows, dtype=np.float32)
        kernels.gemv_lut(self.tiles, row.reshape(-1), out)
        return out

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """x @ W.T for x of shape [T, cols] -> [T, rows]."""
        if x.shape[0] == 1:  # decode: the shortest way, ~110 calls a token
            return self.matvec(x[0] if self.int8 else self.encode(x[0]))[None, :]
        if self.int8:  # a batch: the int8 GEMM (even 2 rows: it pads to a tile, and still beats 2 GEMVs)
            rows = Q8Rows.of(x, pad=lanes.GEMM_TOKENS)
            out = np.empty((rows.codes.shape[0], self.padded_rows), dtype=np.float32)
            lanes.gemm(self.words, self.scales, rows.codes, rows.double_scales, rows.corrections, out)
            return out[: x.shape[0], : self.rows]
        if x.shape[0] <= self.gemv_max_rows:
            return np.stack([self.matvec(self.encode(row)) for row in x])
        return tiled_product(x, self.rows, self.pool, lambda start, stop, tile: kernels.q1_dequantize(self.tiles, start, stop, tile))

    def rows_as_float(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(ids), self.cols), dtype=np.float32)
        if self.int8:
            lanes.embed(self.words, self.scales, ids.astype(np.int64), out)
        else:
            kernels.q1_embed(self.tiles, ids.astype(np.int64), out)
        return out


class DenseMatrix:
    """An F32 or F16 matrix, held as float32 (these are small or test-only in Bonsai files)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.rows, self.cols = self.data.shape

    def kernel_names(self) -> dict[str, str]:
        return {"decode": "float32 BLAS", "prefill": "float32 BLAS"}

    def matmul(self, x: np.ndarray) -> np.ndarray:
        return x @ self.data.T

    def rows_as_float(self, ids: np.ndarray) -> np.ndarray:
        return self.data[ids]


Matrix = Q1Matrix | DenseMatrix
