"""The int8 KV cache's kernels: quantize on store, dequantize for prefill, and decode attention.

Layout of one (block of BLOCK positions, layer, KV head), head-major like the fp16 cache:
    keys    uint8  [BLOCK/16 tiles, head_dim/4 steps, 16 positions, 4 dims]   code + 128
    k_scale fp16   [BLOCK/16 tiles, head_dim/32 sub-blocks, 16 positions]
    values  int8   [BLOCK positions, head_dim]                                 code
    v_scale fp16   [BLOCK positions, head_dim/32 sub-blocks]
A key or value is code * scale, one scale per 32 dims of a position and head (q8_0's blocks): the
code is round(x / scale), scale = max |x| / 127 over those 32 dims.
Keys are "positions in lanes": one 64-byte step holds 4 consecutive dims of 16 positions, so
VNNI's vpdpbusd (unsigned bytes x signed bytes, 4 products summed into each 32-bit lane) adds one
step of 16 positions' dot products with the query's 4 int8 codes broadcast, and no horizontal sum
is needed. The key codes are stored +128 (unsigned); the query's side subtracts 128 * sum(codes).
Values are rows, accumulated in float32 (each row's 32-dim slices times weight * scale).

The query is quantized per head and 32 dims the same way, so a score is
    sum over sub-blocks of k_scale * q_scale * (integer dot - 128 * sum of the query's codes).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine import simd
from engine.attention import exp_nonpositive, half_to_float

TILE = 16  # positions per key tile: the 16 int32 lanes of a 512-bit vector
SUB = 32  # dims per scale
STEP = 4  # dims per vpdpbusd lane
VNNI = simd.KERNEL == "avx512"  # vpdpbusd on 512-bit vectors (needs AVX-512 VNNI, not capped below it)

_I8, _I16, _I32, _I64, _F32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64), ir.FloatType()
_I32x16, _F32x16 = ir.VectorType(_I32, 16), ir.VectorType(_F32, 16)


# ---- quantizing ---------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def half_bits(x: np.float32) -> np.uint16:
    """The fp16 nearest to x >= 0 (ties to even), as its bits (Numba has no float16 type)."""
    if x >= np.float32(65504.0):
        return np.uint16(0x7BFF)
    if x < np.float32(6.103515625e-05):  # subnormal: whole units of 2^-24 (1024 of them is the smallest normal)
        return np.uint16(np.rint(np.float64(x) * 16777216.0))
    fraction, exponent = math.frexp(np.float64(x))  # x = fraction * 2^exponent, 0.5 <= fraction < 1
    mantissa = np.int64(np.rint((2.0 * fraction - 1.0) * 1024.0))
    biased = exponent - 1 + 15
    if mantissa == 1024:
        mantissa = 0
        biased += 1
    return np.uint16((biased << 10) | mantissa)


@njit(cache=True, nogil=True, inline="always")
def _quantize_slice(x: np.ndarray, start: int, codes: np.ndarray) -> np.uint16:
    """codes[i] = round(x[start + i] / scale) for i < SUB; returns the scale's fp16 bits. The scale,
    max |x| / 127, is rounded to fp16 first (what the cache keeps), so code * stored scale is the
    point of that grid nearest to x."""
    amax = np.float32(0.0)
    for i in range(SUB):
        amax = max(amax, abs(x[start + i]))
    bits = half_bits(amax / np.float32(127.0))
    scale = half_to_float(bits)
    inverse = np.float32(1.0) / scale if scale > 0 else np.float32(0.0)
    for i in range(SUB):
        codes[i] = max(-127, min(127, np.int32(np.rint(x[start + i] * inverse))))
    return bits


@njit(cache=True, nogil=True)
def store_rows(
    k: np.ndarray, v: np.ndarray, start: int, layer: int,
    keys: np.ndarray, k_scale: np.ndarray, values: np.ndarray, v_scale: np.ndarray,
) -> None:
    """Quantize k, v [T, n_kv, head_dim] (float32) into the cache at positions start..start+T."""
    n, n_kv, head_dim = k.shape
    block = values.shape[3]
    codes = np.empty(SUB, dtype=np.int32)
    for t in range(n):
        b, slot = divmod(start + t, block)
        tile, lane = divmod(slot, TILE)
        for kv in range(n_kv):
            for sub in range(head_dim // SUB):
                k_scale[b, layer, kv, tile, sub, lane] = _quantize_slice(k[t, kv], sub * SUB, codes)
                for i in range(SUB):
                    dim = sub * SUB + i
                    keys[b, layer, kv, tile, dim // STEP, lane, dim % STEP] = np.uint8(codes[i] + 128)
                v_scale[b, layer, kv, slot, sub] = _quantize_slice(v[t, kv], sub * SUB, codes)
                for i in range(SUB):
                    values[b, layer, kv, slot, sub * SUB + i] = np.int8(codes[i])


@njit(cache=True, nogil=True)
def dequantize_rows(
    keys: np.ndarray, k_scale: np.ndarray, values: np.ndarray, v_scale: np.ndarray,
    layer: int, kv_first: int, kv_stop: int, start: int, end: int, k_out: np.ndarray, v_out: np.ndarray,
) -> None:
    """k_out, v_out [end - start, kv_stop - kv_first, head_dim] = the float32 keys and values of KV
    heads kv_first..kv_stop at positions start..end."""
    block, head_dim = values.shape[3], values.shape[4]
    for pos in range(start, end):
        b, slot = divmod(pos, block)
        tile, lane = divmod(slot, TILE)
        for kv in range(kv_first, kv_stop):
            for dim in range(head_dim):
                ks = half_to_float(k_scale[b, layer, kv, tile, dim // SUB, lane])
                code = np.int32(keys[b, layer, kv, tile, dim // STEP, lane, dim % STEP]) - 128
                k_out[pos - start, kv - kv_first, dim] = np.float32(code) * ks
                vs = half_to_float(v_scale[b, layer, kv, slot, dim // SUB])
                v_out[pos - start, kv - kv_first, dim] = np.float32(values[b, layer, kv, slot, dim]) * vs


@njit(cache=True, nogil=True)
def quantize_query(q: np.ndarray, codes: np.ndarray, scales: np.ndarray, corrections: np.ndarray) -> None:
    """codes [n_head, head_dim] int8, scales [n_head, head_dim/32] float32 (times 1/sqrt(head_dim),
    the softmax's scale, folded in), corrections [n_head, head_dim/32] int32 = 128 * sum of codes."""
    n_head, head_dim = q.shape
    row = np.empty(SUB, dtype=np.int32)
    softmax_scale = np.float32(1.0 / math.sqrt(head_dim))
    for h in range(n_head):
        for sub in range(head_dim // SUB):
            scale = half_to_float(_quantize_slice(q[h], sub * SUB, row))
            total = 0
            for i in range(SUB):
                codes[h, sub * SUB + i] = row[i]
                total += row[i]
            scales[h, sub] = scale * softmax_scale
            corrections[h, sub] = 128 * total


# ---- key scores ---------------------------------------------------------------------------------


def _address(context, builder, array_type, array, index, pointee: ir.Type):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), pointee.as_pointer())


def _splat(builder, value, lanes: int):
    vector = ir.VectorType(value.type, lanes)
    first = builder.insert_element(ir.Constant(vector, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(first, ir.Constant(vector, None), ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


@intrinsic
def _tile_scores_vnni(typingctx, scores, s_at, keys, k_at, k_scale, ks_at, codes, c_at, scale, correction):
    """scores[s_at : +16] += the 16 positions' scores over one 32-dim sub-block: the key tile's
    8 steps there (keys[k_at :], flat) against the query's codes[c_at : +32], times the keys'
    scales (k_scale[ks_at : +16], fp16 bits) and the query's `scale`, less `correction`."""
    sig = types.void(scores, s_at, keys, k_at, k_scale, ks_at, codes, c_at, scale, correction)

    def codegen(context, builder, signature, args):
        scores, s_at, keys, k_at, k_scale, ks_at, codes, c_at, scale, correction = args
        scores_t, _, keys_t, _, ks_t, _, codes_t, _, _, _ = signature.args
        dot4 = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I32x16, [_I32x16] * 3), "llvm.x86.avx512.vpdpbusd.512")
        sums = ir.Constant(_I32x16, None)
        for step in range(SUB // STEP):
            at = builder.add(k_at, ir.Constant(k_at.type, step * STEP * TILE))
            key = builder.load(_address(context, builder, keys_t, keys, at, _I32x16), align=1)
            code_at = builder.add(c_at, ir.Constant(c_at.type, step * STEP))
            four = builder.load(_address(context, builder, codes_t, codes, code_at, _I32), align=1)
            sums = builder.call(dot4, [sums, key, _splat(builder, four, 16)])
        halves = builder.load(_address(context, builder, ks_t, k_scale, ks_at, ir.VectorType(_I16, TILE)), align=2)
        k_scales = builder.fpext(builder.bitcast(halves, ir.VectorType(ir.HalfType(), TILE)), _F32x16)
        correction32 = builder.trunc(correction, _I32) if correction.type.width > 32 else correction
        dots = builder.sitofp(builder.sub(sums, _splat(builder, correction32, 16)), _F32x16)
        scale32 = builder.fptrunc(scale, _F32) if scale.type != _F32 else scale
        target = _address(context, builder, scores_t, scores, s_at, _F32x16)
        product = builder.fmul(dots, builder.fmul(k_scales, _splat(builder, scale32, 16)))
        builder.store(builder.fadd(builder.load(target, align=4), product), target, align=4)
        return context.get_dummy_value()

    return sig, codegen


CHUNK_SUBS = 4  # sub-blocks per call of _tile_pair_scores_vnni: 128 dims, 8 independent sums


@intrinsic
def _tile_pair_scores_vnni(typingctx, scores, s_at, s_at2, keys, k_at, k_scale, ks_at, codes, c_at, c_at2, scales, corrections, q_at, q_at2):
    """_tile_scores_vnni for two query heads over CHUNK_SUBS sub-blocks (128 dims) at once: each key
    vector is loaded once for both, and the 8 (head, sub-block) sums are independent chains.
    Head 1: scores[s_at :], codes[c_at :], scales / corrections[q_at :]; head 2 at the *2 offsets."""
    sig = types.void(scores, s_at, s_at2, keys, k_at, k_scale, ks_at, codes, c_at, c_at2, scales, corrections, q_at, q_at2)

    def codegen(context, builder, signature, args):
        scores, s_at, s_at2, keys, k_at, k_scale, ks_at, codes, c_at, c_at2, scales, corrections, q_at, q_at2 = args
        scores_t, _, _, keys_t, _, ks_t, _, codes_t, _, _, scales_t, corr_t, _, _ = signature.args
        dot4 = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I32x16, [_I32x16] * 3), "llvm.x86.avx512.vpdpbusd.512")
        offset = lambda base, n: builder.add(base, ir.Constant(base.type, n))  # noqa: E731
        heads = ((s_at, c_at, q_at), (s_at2, c_at2, q_at2))
        totals = []
        sums = {(h, sub): ir.Constant(_I32x16, None) for h in range(2) for sub in range(CHUNK_SUBS)}
        for step in range(SUB // STEP):
            for sub in range(CHUNK_SUBS):
                k = sub * (SUB // STEP) + step
                key = builder.load(_address(context, builder, keys_t, keys, offset(k_at, k * STEP * TILE), _I32x16), align=1)
                for h, (_, code_at, _) in enumerate(heads):
                    four = builder.load(_address(context, builder, codes_t, codes, offset(code_at, k * STEP), _I32), align=1)
                    sums[h, sub] = builder.call(dot4, [sums[h, sub], key, _splat(builder, four, 16)])
        for h, (score_at, _, scale_at) in enumerate(heads):
            total = None
            for sub in range(CHUNK_SUBS):
                halves = builder.load(
                    _address(context, builder, ks_t, k_scale, offset(ks_at, sub * TILE), ir.VectorType(_I16, TILE)), align=2)
                k_scales = builder.fpext(builder.bitcast(halves, ir.VectorType(ir.HalfType(), TILE)), _F32x16)
                correction = builder.load(_address(context, builder, corr_t, corrections, offset(scale_at, sub), _I32))
                scale = builder.load(_address(context, builder, scales_t, scales, offset(scale_at, sub), _F32))
                dots = builder.sitofp(builder.sub(sums[h, sub], _splat(builder, correction, 16)), _F32x16)
                part = builder.fmul(dots, builder.fmul(k_scales, _splat(builder, scale, 16)))
                total = part if total is None else builder.fadd(total, part)
            target = _address(context, builder, scores_t, scores, score_at, _F32x16)
            builder.store(builder.fadd(builder.load(target, align=4), total), target, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _tile_scores_loop(scores, s_at, keys, k_at, k_scale, ks_at, codes, c_at, scale, correction):
    """_tile_scores_vnni in plain loops (every CPU): the same integers, the same result."""
    lane_sums = np.zeros(TILE, dtype=np.int32)
    for step in range(SUB // STEP):
        for j in range(STEP):
            x = np.int32(codes[c_at + step * STEP + j])
            base = k_at + step * STEP * TILE + j
            for lane in range(TILE):
                lane_sums[lane] += np.int32(keys[base + lane * STEP]) * x
    for lane in range(TILE):
        k_scale_value = half_to_float(k_scale[ks_at + lane])
        scores[s_at + lane] += np.float32(lane_sums[lane] - correction) * (k_scale_value * scale)


_tile_scores = _tile_scores_vnni if VNNI else _tile_scores_loop


# ---- values -------------------------------------------------------------------------------------


@intrinsic
def _add_values_pair_avx512(typingctx, acc, acc_at, acc_at2, weights, w_at, w_at2, values, v_at, v_scale, vs_at, count, row, n_subs):
    """acc[acc_at : +128] += sum over p < count of weights[w_at + p] * value row p's dims 0..128 (the
    second head likewise from w_at2 into acc_at2). Row p: values[v_at + p*row :], its fp16 scales
    v_scale[vs_at + p*n_subs :]. The 16 accumulators stay in registers over the loop."""
    sig = types.void(acc, acc_at, acc_at2, weights, w_at, w_at2, values, v_at, v_scale, vs_at, count, row, n_subs)

    def codegen(context, builder, signature, args):
        acc, acc_at, acc_at2, weights, w_at, w_at2, values, v_at, v_scale, vs_at, count, row, n_subs = args
        acc_t, _, _, weights_t, _, _, values_t, _, vs_t, _, _, _, _ = signature.args
        lanes = 16
        n_vec = CHUNK_SUBS * SUB // lanes
        slots = [[cgutils.alloca_once_value(builder, ir.Constant(_F32x16, None)) for _ in range(n_vec)] for _ in range(2)]
        with cgutils.for_range(builder, count) as loop:
            p = loop.index
            v_row = builder.add(v_at, builder.mul(p, row))
            s_row = builder.add(vs_at, builder.mul(p, n_subs))
            ws = [builder.load(_address(context, builder, weights_t, weights, builder.add(at, p), _F32)) for at in (w_at, w_at2)]
            for sub in range(CHUNK_SUBS):
                half = builder.load(_address(context, builder, vs_t, v_scale, builder.add(s_row, ir.Constant(p.type, sub)), ir.HalfType()))
                scale = builder.fpext(half, _F32)
                factors = [_splat(builder, builder.fmul(w, scale), lanes) for w in ws]
                for part in range(SUB // lanes):
                    i = sub * (SUB // lanes) + part
                    at = builder.add(v_row, ir.Constant(p.type, i * lanes))
                    codes = builder.load(_address(context, builder, values_t, values, at, ir.VectorType(_I8, lanes)), align=1)
                    x = builder.sitofp(codes, _F32x16)
                    for h in range(2):
                        slot = slots[h][i]
                        builder.store(builder.fadd(builder.load(slot), builder.fmul(x, factors[h])), slot)
        for h, base in enumerate((acc_at, acc_at2)):
            for i in range(n_vec):
                target = _address(context, builder, acc_t, acc, builder.add(base, ir.Constant(base.type, i * lanes)), _F32x16)
                builder.store(builder.fadd(builder.load(target, align=4), builder.load(slots[h][i])), target, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _add_values(weights: np.ndarray, g: int, at: int, values: np.ndarray, v_scale: np.ndarray, count: int, acc: np.ndarray) -> None:
    """acc[g] += sum over p < count of weights[g, at + p] * (values[p] x their scales)."""
    head_dim = acc.shape[1]
    for p in range(count):
        w = weights[g, at + p]
        for sub in range(head_dim // SUB):
            ws = w * half_to_float(v_scale[p, sub])
            for i in range(sub * SUB, (sub + 1) * SUB):
                acc[g, i] += ws * np.float32(values[p, i])


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _add_values_pair(weights: np.ndarray, g: int, at: int, values: np.ndarray, v_scale: np.ndarray, count: int, acc: np.ndarray) -> None:
    """_add_values for heads g and g+1: each value converted once for both."""
    head_dim = acc.shape[1]
    for p in range(count):
        a, b = weights[g, at + p], weights[g + 1, at + p]
        for sub in range(head_dim // SUB):
            s = half_to_float(v_scale[p, sub])
            sa, sb = a * s, b * s
            for i in range(sub * SUB, (sub + 1) * SUB):
                x = np.float32(values[p, i])
                acc[g, i] += sa * x
                acc[g + 1, i] += sb * x


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _softmax_in_place(row: np.ndarray, n: int) -> None:
    best = row[:n].max()
    total = np.float32(0.0)
    for p in range(n):
        e = exp_nonpositive(row[p] - best)
        row[p] = e
        total += e
    inverse = np.float32(1.0) / total
    for p in range(n):
        row[p] *= inverse


# ---- decode attention ---------------------------------------------------------------------------


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def attend_one_token(
    q: np.ndarray, keys: np.ndarray, k_scale: np.ndarray, values: np.ndarray, v_scale: np.ndarray,
    layer: int, n_keys: int, out: np.ndarray,
) -> None:
    """Grouped-query attention of one query token over the first n_keys positions of `layer` in the
    int8 cache (arrays as in the module docstring, whole cache). q, out: [n_head, head_dim] float32.
    One job per KV head, as the fp16 kernel: its query heads share each value row's conversion."""
    n_head, head_dim = q.shape
    n_kv, block = values.shape[2], values.shape[3]
    group = n_head // n_kv
    n_subs = head_dim // SUB
    codes = np.empty((n_head, head_dim), dtype=np.int8)
    q_scales = np.empty((n_head, n_subs), dtype=np.float32)
    corrections = np.empty((n_head, n_subs), dtype=np.int32)
    quantize_query(q, codes, q_scales, corrections)
    flat_codes, flat_scales, flat_corr = codes.ravel(), q_scales.ravel(), corrections.ravel()
    n_blocks = (n_keys + block - 1) // block
    tiles_per_block = block // TILE
    tile_bytes = TILE * head_dim
    padded = n_blocks * block
    for kv in prange(n_kv):
        first = kv * group
        scores = np.empty((group, padded), dtype=np.float32)
        flat_scores = scores.ravel()
        for b in range(n_blocks):
            key_tiles = keys[b, layer, kv].ravel()
            scale_tiles = k_scale[b, layer, kv].ravel()
            used = min(tiles_per_block, (n_keys - b * block + TILE - 1) // TILE)
            scores[:, b * block : b * block + used * TILE] = 0.0
            for t in range(used):
                for g in range(group):
                    if VNNI and g % 2 == 0 and g + 1 < group and head_dim % (CHUNK_SUBS * SUB) == 0:
                        for chunk in range(0, n_subs, CHUNK_SUBS):
                            h = first + g
                            _tile_pair_scores_vnni(
                                flat_scores, g * padded + b * block + t * TILE, (g + 1) * padded + b * block + t * TILE,
                                key_tiles, t * tile_bytes + chunk * SUB * TILE, scale_tiles, (t * n_subs + chunk) * TILE,
                                flat_codes, h * head_dim + chunk * SUB, (h + 1) * head_dim + chunk * SUB,
                                flat_scales, flat_corr, h * n_subs + chunk, (h + 1) * n_subs + chunk,
                            )
                        continue
                    if VNNI and g % 2 == 1 and head_dim % (CHUNK_SUBS * SUB) == 0:
                        continue  # done with its pair
                    h = first + g
                    for sub in range(n_subs):
                        _tile_scores(
                            flat_scores, g * padded + b * block + t * TILE, key_tiles, t * tile_bytes + sub * SUB * TILE,
                            scale_tiles, (t * n_subs + sub) * TILE, flat_codes, h * head_dim + sub * SUB,
                            flat_scales[h * n_subs + sub], flat_corr[h * n_subs + sub],
                        )
        for g in range(group):
            _softmax_in_place(scores[g], n_keys)
        acc = np.zeros((group, head_dim), dtype=np.float32)
        for b in range(n_blocks):
            count = min(block, n_keys - b * block)
            rows, row_scales = values[b, layer, kv], v_scale[b, layer, kv]
            for pair in range(group // 2):
                if VNNI and head_dim % (CHUNK_SUBS * SUB) == 0:
                    for chunk in range(0, n_subs, CHUNK_SUBS):
                        _add_values_pair_avx512(
                            acc.ravel(), 2 * pair * head_dim + chunk * SUB, (2 * pair + 1) * head_dim + chunk * SUB,
                            flat_scores, 2 * pair * padded + b * block, (2 * pair + 1) * padded + b * block,
                            rows.ravel(), chunk * SUB, row_scales.ravel(), chunk, count, head_dim, n_subs,
                        )
                else:
                    _add_values_pair(scores, 2 * pair, b * block, rows, row_scales, count, acc)
            if group % 2:
                _add_values(scores, group - 1, b * block, rows, row_scales, count, acc)
        for g in range(group):
            for i in range(head_dim):
                out[first + g, i] = acc[g, i]
