"""Numba kernels for Q2_0 (GGML type 42), the ternary Bonsai models' weights.

A row of n weights is blocks of 2-bit codes after an fp16 scale d, in one of two layouts:
    PrismML's (the released files)   128 weights in 34 bytes: [ d | 32 bytes of codes ]
    mainline llama.cpp's ("g64")      64 weights in 18 bytes: [ d | 16 bytes of codes ]
Weight j of a block is (q - 1) * d for the code q = (codes[j // 4] >> 2 * (j % 4)) & 3, lowest bits
first. Ternary files only use q = 0, 1, 2; q = 3 (+2d) decodes as llama.cpp decodes it.
The kernels read both layouts: a block's size is the last dimension of the tiled matrix.

As for Q1_0 (kernels.py), a matrix is regrouped at load into tiles of ROW_TILE rows stored block
column by block column, and decode has two GEMVs:
- int8 (q2_gemv_q8, where simd.AVAILABLE): Σ (q - 1)·x = Σ q·x - Σ x, so AVX-512 VNNI's vpdpbusd
  takes the codes themselves as its unsigned operand and starts from -Σ x, precomputed per lane.
  The codes come out of their bytes by one shift per 128-bit lane (q2_g128_block_q8_accumulate), which
  leaves them in the order 4k + s -> 16 s + k; quantize_q8_interleaved puts the activations in that
  same order once per input vector, so the weights are never reordered.
- exact (q2_gemv_lut): a float table of the 256 sums each code byte (4 weights) can make with its
  4 activations, built once per input vector; one table load and one add per byte.
Prefill unpacks tiles to float32 for BLAS (q2_dequantize), as Q1_0 does.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.kernels import ROW_TILE, fp16_to_float

Q2_GROUP = 64  # weights per vector step (a g64 block, half a g128 block)
Q2_GROUP_CODE_BYTES = 16
Q8_BLOCK = 32  # activations per int8 scale, as llama.cpp's Q8_0
LANES = 16  # int32 lanes of vpdpbusd, 4 activations each
LAYOUTS = {"g128": (128, 34), "g64": (64, 18)}  # weights and bytes per block
# the four weights (over a unit scale) of every code byte: a table beats four shifts when unpacking
BYTE_VALUES = (((np.arange(256)[:, None] >> np.array([0, 2, 4, 6])) & 3) - 1).astype(np.float32)

_I8x16 = ir.VectorType(ir.IntType(8), 16)
_I8x64 = ir.VectorType(ir.IntType(8), 64)
_I64x8 = ir.VectorType(ir.IntType(64), 8)
_I32x16 = ir.VectorType(ir.IntType(32), LANES)
_I32x64 = ir.VectorType(ir.IntType(32), 64)
_F32x16 = ir.VectorType(ir.FloatType(), LANES)


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


# ---- int8 decode ----------------------------------------------------------------------------


def _pointer(context, builder, array_type, array, index, pointee: ir.Type):
    """Address of array[index] (a flat, contiguous array), typed as a pointer to `pointee`."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), pointee.as_pointer())


def _block_step(groups: int):
    """The vector step for one block of `groups` x 64 weights (2: PrismML's layout, 1: g64)."""

    @intrinsic
    def step(typingctx, acc, acc_at, tiles, block_at, xq, x_at, neg_sums, scales, lane_at):
        """acc[acc_at : +16] += d * Σ (q - 1)·x over the block at tiles[block_at], as 16 lane sums.

        tiles: uint8, the block's fp16 d then its code bytes; xq: int8 activations in the order of
        quantize_q8_interleaved, from x_at; neg_sums (int32) and scales (float32): per lane, from
        lane_at. All arrays flat. AVX-512 BW + VNNI only.
        """
        signature = types.void(acc, acc_at, tiles, block_at, xq, x_at, neg_sums, scales, lane_at)

        def codegen(context, builder, sig, args):
            acc, acc_at, tiles, block_at, xq, x_at, neg_sums, scales, lane_at = args
            acc_t, _, tiles_t, _, xq_t, _, sums_t, scales_t, _ = sig.args
            block = _pointer(context, builder, tiles_t, tiles, block_at, ir.IntType(8))
            half_d = builder.load(builder.bitcast(block, ir.IntType(16).as_pointer()), align=1)
            d = builder.fpext(builder.bitcast(half_d, ir.HalfType()), ir.FloatType())
            dot4 = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_I32x16, [_I32x16] * 3), "llvm.x86.avx512.vpdpbusd.512"
            )
            total = None
            for group in range(groups):
                codes_at = builder.gep(block, [ir.Constant(ir.IntType(64), 2 + Q2_GROUP_CODE_BYTES * group)])
                packed = builder.load(builder.bitcast(codes_at, _I8x16.as_pointer()), align=1)
                # the 16 bytes in each 128-bit lane s, shifted right by 2s: lane s holds codes 4k + s
                repeated = builder.shuffle_vector(packed, packed, ir.Constant(_I32x64, [i % 16 for i in range(64)]))
                shifted = builder.lshr(builder.bitcast(repeated, _I64x8), ir.Constant(_I64x8, [0, 0, 2, 2, 4, 4, 6, 6]))
                q = builder.and_(builder.bitcast(shifted, _I8x64), ir.Constant(_I8x64, [3] * 64))
                at = builder.add(x_at, ir.Constant(x_at.type, Q2_GROUP * group))
                x = builder.load(_pointer(context, builder, xq_t, xq, at, _I8x64), align=1)
                lane = builder.add(lane_at, ir.Constant(lane_at.type, LANES * group))
                start = builder.load(_pointer(context, builder, sums_t, neg_sums, lane, _I32x16), align=4)
                lanes = builder.call(dot4, [start, builder.bitcast(q, _I32x16), builder.bitcast(x, _I32x16)])
                lane_scales = builder.load(_pointer(context, builder, scales_t, scales, lane, _F32x16), align=4)
                part = builder.fmul(builder.sitofp(lanes, _F32x16), lane_scales, flags=["contract"])
                total = part if total is None else builder.fadd(total, part, flags=["contract"])
            splat_d = builder.shuffle_vector(
                builder.insert_element(ir.Constant(_F32x16, None), d, ir.Constant(ir.IntType(32), 0)),
                ir.Constant(_F32x16, None), ir.Constant(_I32x16, [0] * LANES),
            )
            acc_ptr = _pointer(context, builder, acc_t, acc, acc_at, _F32x16)
            product = builder.fmul(total, splat_d, flags=["contract"])
            builder.store(builder.fadd(builder.load(acc_ptr, align=4), product, flags=["contract"]), acc_ptr, align=4)
            return context.get_dummy_value()

        return signature, codegen

    return step


q2_g128_block_q8_accumulate = _block_step(2)
q2_g64_block_q8_accumulate = _block_step(1)


@njit(cache=True, nogil=True)
def quantize_q8_interleaved(x: np.ndarray, xq: np.ndarray, neg_sums: np.ndarray, scales: np.ndarray) -> None:
    """x -> int8 per 32 values (scale = max|x| / 127, as lanes.quantize_rows), in the codes' order.

    Within each group of 64, xq[16 s + k] is the code of x[4 k + s]. Lane i of a group (its bytes
    4i..4i+3) then covers x[16 (i % 4) + 4 t + s], t < 4, all in 32-block (i % 4) // 2: scales[lane]
    is that block's scale, neg_sums[lane] minus the sum of the lane's 4 codes.
    """
    block_scale = np.empty(2, dtype=np.float32)
    inverse = np.empty(2, dtype=np.float32)
    for g in range(x.shape[0] // Q2_GROUP):
        base = g * Q2_GROUP
        for b in range(2):
            largest = np.float32(0.0)
            for j in range(base + Q8_BLOCK * b, base + Q8_BLOCK * (b + 1)):
                largest = max(largest, abs(x[j]))
            block_scale[b] = np.float32(largest / 127.0)
            inverse[b] = np.float32(1.0) / block_scale[b] if block_scale[b] > 0 else np.float32(0.0)
        for s in range(4):
            for k in range(16):
                j = 4 * k + s
                xq[base + 16 * s + k] = np.int8(round(x[base + j] * inverse[j // Q8_BLOCK]))
        for lane in range(LANES):
            total = np.int32(0)
            for t in range(4):
                total += np.int32(xq[base + 4 * lane + t])
            neg_sums[g * LANES + lane] = -total
            scales[g * LANES + lane] = block_scale[(lane % 4) // 2]


@njit(cache=True, nogil=True, parallel=True)
def q2_gemv_q8(tiles: np.ndarray, xq: np.ndarray, neg_sums: np.ndarray, scales: np.ndarray, out: np.ndarray) -> None:
    """out[r] = dot(row r, x) for a tiled Q2_0 matrix (either layout), x from quantize_q8_interleaved."""
    n_tiles, n_blocks, block_bytes = tiles.shape[0], tiles.shape[1], tiles.shape[3]
    block_weights = 4 * (block_bytes - 2)
    lanes_per_block = block_weights // 4
    flat = tiles.reshape(-1)
    for t in prange(n_tiles):
        acc = np.zeros(ROW_TILE * LANES, dtype=np.float32)  # 16 partial sums per row
        for blk in range(n_blocks):
            column = (t * n_blocks + blk) * ROW_TILE * block_bytes
            x_at, lane_at = blk * block_weights, blk * lanes_per_block
            if block_weights == 128:
                for r in range(ROW_TILE):
                    q2_g128_block_q8_accumulate(
                        acc, r * LANES, flat, column + r * block_bytes, xq, x_at, neg_sums, scales, lane_at
                    )
            else:
                for r in range(ROW_TILE):
                    q2_g64_block_q8_accumulate(
                        acc, r * LANES, flat, column + r * block_bytes, xq, x_at, neg_sums, scales, lane_at
                    )
        for r in range(min(ROW_TILE, out.shape[0] - t * ROW_TILE)):
            out[t * ROW_TILE + r] = acc[r * LANES : (r + 1) * LANES].sum()


# ---- exact decode (float lookup table) -------------------------------------------------------


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


@njit(cache=True, nogil=True, parallel=True)
def q2_gemv_lut(tiles: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """out[r] = dot(row r, x) for a tiled Q2_0 matrix, with lut = build_code_lut(x) flattened."""
    n_tiles, n_blocks, block_bytes = tiles.shape[0], tiles.shape[1], tiles.shape[3]
    code_bytes = block_bytes - 2
    for t in prange(n_tiles):
        acc = np.zeros(ROW_TILE, dtype=np.float32)
        for blk in range(n_blocks):
            base = blk * code_bytes * 256  # this block column's slice of the table
            for r in range(ROW_TILE):
                block = tiles[t, blk, r]
                # four partial sums: one would stall on each add's latency
                s0 = np.float32(0.0)
                s1 = np.float32(0.0)
                s2 = np.float32(0.0)
                s3 = np.float32(0.0)
                for k in range(0, code_bytes, 4):
                    s0 += lut[base + k * 256 + block[2 + k]]
                    s1 += lut[base + (k + 1) * 256 + block[3 + k]]
                    s2 += lut[base + (k + 2) * 256 + block[4 + k]]
                    s3 += lut[base + (k + 3) * 256 + block[5 + k]]
                acc[r] += fp16_to_float(block[0], block[1]) * ((s0 + s1) + (s2 + s3))
        for r in range(min(ROW_TILE, out.shape[0] - t * ROW_TILE)):
            out[t * ROW_TILE + r] = acc[r]


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
