"""The int8 KV cache's two AVX-512 VNNI steps, as LLVM IR through Numba's @intrinsic (see simd.py's
style): a key tile's scores (vpdpbusd) and a value tile's weighted sum (vpdpwssd), two query heads
at a time, 128 dims per call. Layouts and the arithmetic they implement: attention_q8.py.

Numba's on-disk cache of a kernel is keyed on the file that defines it (attention_q8.py), not
this one: after editing this file, touch attention_q8.py (or delete engine/__pycache__).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

TILE = 16  # positions per tile: the 16 int32 lanes of a 512-bit vector
SUB = 32  # dims per scale
STEP = 4  # dims per vpdpbusd lane (key tiles)
CHUNK_SUBS = 4  # sub-blocks per call: 128 dims

_I8, _I16, _I32, _F32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.FloatType()
_I32x16, _F32x16 = ir.VectorType(_I32, 16), ir.VectorType(_F32, 16)


def _address(context, builder, array_type, array, index, pointee: ir.Type):
    """Pointer to array[index] (a flat array), cast to `pointee`."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), pointee.as_pointer())


def _splat(builder, value, lanes: int):
    vector = ir.VectorType(value.type, lanes)
    first = builder.insert_element(ir.Constant(vector, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(first, ir.Constant(vector, None), ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def _plus(builder, base, n: int):
    return builder.add(base, ir.Constant(base.type, n))


PREFETCH_TILES = 4  # tiles ahead of its reads that a step asks for: decode at 4,096 positions, 2 threads,
# 28 layers of attention alone: 22 -> 16.5-19 ms (the hardware prefetcher restarts at each 4 KB page)


def _prefetch(context, builder, array_type, array, index, lines: int, tile_bytes: int) -> None:
    """Ask for `lines` cache lines from array[index] + PREFETCH_TILES tiles on (a hint: never faults)."""
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer(), _I32, _I32, _I32]), "llvm.prefetch.p0")
    base = builder.gep(_address(context, builder, array_type, array, index, _I8), [ir.Constant(_I32, PREFETCH_TILES * tile_bytes)])
    for line in range(lines):
        at = builder.gep(base, [ir.Constant(_I32, 64 * line)])
        builder.call(function, [at, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])


def _vnni(builder, name: str):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32x16, [_I32x16] * 3), f"llvm.x86.avx512.{name}.512")


@intrinsic
def tile_pair_scores(typingctx, scores, s_at, s_at2, keys, k_at, k_scale, ks_at, codes, c_at, c_at2, scales, corrections, q_at, q_at2):
    """scores[s_at : +16] += one key tile's 16 scores for one query head over 128 dims, and the same
    for a second head at s_at2. Key tile: keys[k_at :] (uint8 codes + 128, 4-dim steps of 16
    positions), its fp16 scales k_scale[ks_at :] (16 per sub-block). Query head: int8 codes[c_at :],
    per sub-block scales[q_at :] and corrections[q_at :] (128 * sum of codes); head 2 at the *2.
    Each key vector is loaded once for both heads; the 8 (head, sub-block) sums are independent."""
    sig = types.void(scores, s_at, s_at2, keys, k_at, k_scale, ks_at, codes, c_at, c_at2, scales, corrections, q_at, q_at2)

    def codegen(context, builder, signature, args):
        scores, s_at, s_at2, keys, k_at, k_scale, ks_at, codes, c_at, c_at2, scales, corrections, q_at, q_at2 = args
        scores_t, _, _, keys_t, _, ks_t, _, codes_t, _, _, scales_t, corr_t, _, _ = signature.args
        dot4 = _vnni(builder, "vpdpbusd")
        heads = ((s_at, c_at, q_at), (s_at2, c_at2, q_at2))
        sums = {(h, sub): ir.Constant(_I32x16, None) for h in range(2) for sub in range(CHUNK_SUBS)}
        if PREFETCH_TILES:
            _prefetch(context, builder, keys_t, keys, k_at, CHUNK_SUBS * SUB * TILE // 64, 128 * TILE)
            _prefetch(context, builder, ks_t, k_scale, ks_at, 2, 2 * 4 * TILE)
        for step in range(SUB // STEP):
            for sub in range(CHUNK_SUBS):
                k = sub * (SUB // STEP) + step
                key = builder.load(_address(context, builder, keys_t, keys, _plus(builder, k_at, k * STEP * TILE), _I32x16), align=1)
                for h, (_, code_at, _) in enumerate(heads):
                    four = builder.load(_address(context, builder, codes_t, codes, _plus(builder, code_at, k * STEP), _I32), align=1)
                    sums[h, sub] = builder.call(dot4, [sums[h, sub], key, _splat(builder, four, 16)])
        for h, (score_at, _, scale_at) in enumerate(heads):
            total = None
            for sub in range(CHUNK_SUBS):
                halves = builder.load(
                    _address(context, builder, ks_t, k_scale, _plus(builder, ks_at, sub * TILE), ir.VectorType(_I16, TILE)), align=2)
                k_scales = builder.fpext(builder.bitcast(halves, ir.VectorType(ir.HalfType(), TILE)), _F32x16)
                correction = builder.load(_address(context, builder, corr_t, corrections, _plus(builder, scale_at, sub), _I32))
                scale = builder.load(_address(context, builder, scales_t, scales, _plus(builder, scale_at, sub), _F32))
                dots = builder.sitofp(builder.sub(sums[h, sub], _splat(builder, correction, 16)), _F32x16)
                part = builder.fmul(dots, builder.fmul(k_scales, _splat(builder, scale, 16)))
                total = part if total is None else builder.fadd(total, part)
            target = _address(context, builder, scores_t, scores, score_at, _F32x16)
            builder.store(builder.fadd(builder.load(target, align=4), total), target, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def tile_pair_values(typingctx, acc, acc_at, acc_at2, values, v_at, pair_stride, v_scale, vs_at, weights, w_at, w_at2):
    """acc[acc_at : +128] += sum over the tile's 16 positions of weights[w_at + p] * value row p (128
    dims), and the same for a second head (acc_at2, w_at2). Value tile: values[v_at :], pairs of
    positions interleaved per dim (pair i at + i * pair_stride bytes), fp16 scales v_scale[vs_at +
    16 * sub :]. Per sub-block, weight x scale of the 16 positions become int16 codes of their
    largest / 32767; vpdpwssd adds each dim's two positions' code products into its int32 lane."""
    sig = types.void(acc, acc_at, acc_at2, values, v_at, pair_stride, v_scale, vs_at, weights, w_at, w_at2)

    def codegen(context, builder, signature, args):
        acc, acc_at, acc_at2, values, v_at, pair_stride, v_scale, vs_at, weights, w_at, w_at2 = args
        acc_t, _, _, values_t, _, _, vs_t, _, weights_t, _, _ = signature.args
        dot2 = _vnni(builder, "vpdpwssd")
        fmax = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32, [_F32x16]), "llvm.vector.reduce.fmax.v16f32")
        heads = ((acc_at, w_at), (acc_at2, w_at2))
        if PREFETCH_TILES:
            _prefetch(context, builder, values_t, values, v_at, CHUNK_SUBS * SUB * TILE // 64, 128 * TILE)
            _prefetch(context, builder, vs_t, v_scale, vs_at, 2, 2 * 4 * TILE)
        w = [builder.load(_address(context, builder, weights_t, weights, at, _F32x16), align=4) for _, at in heads]
        for sub in range(CHUNK_SUBS):
            halves = builder.load(_address(context, builder, vs_t, v_scale, _plus(builder, vs_at, sub * TILE), ir.VectorType(_I16, TILE)), align=2)
            v_scales = builder.fpext(builder.bitcast(halves, ir.VectorType(ir.HalfType(), TILE)), _F32x16)
            codes16, steps = [], []
            for h in range(2):
                scaled = builder.fmul(w[h], v_scales)  # >= 0
                step = builder.fdiv(builder.call(fmax, [scaled]), ir.Constant(_F32, 32767.0))
                inverse = builder.select(
                    builder.fcmp_ordered(">", step, ir.Constant(_F32, 0.0)),
                    builder.fdiv(ir.Constant(_F32, 1.0), step), ir.Constant(_F32, 0.0))
                rounded = builder.fadd(builder.fmul(scaled, _splat(builder, inverse, 16)), _splat(builder, ir.Constant(_F32, 0.5), 16))
                codes16.append(builder.fptosi(rounded, ir.VectorType(_I16, 16)))
                steps.append(step)
            for half in range(SUB // 16):
                sums = [ir.Constant(_I32x16, None)] * 2
                for pair in range(TILE // 2):
                    at = builder.add(_plus(builder, v_at, (sub * SUB + half * 16) * 2), builder.mul(pair_stride, ir.Constant(pair_stride.type, pair)))
                    codes = builder.load(_address(context, builder, values_t, values, at, ir.VectorType(_I8, 32)), align=1)
                    wide = builder.bitcast(builder.sext(codes, ir.VectorType(_I16, 32)), _I32x16)
                    for h in range(2):
                        two = builder.shuffle_vector(codes16[h], codes16[h], ir.Constant(ir.VectorType(_I32, 32), [2 * pair, 2 * pair + 1] * 16))
                        sums[h] = builder.call(dot2, [sums[h], wide, builder.bitcast(two, _I32x16)])
                for h, (out_at, _) in enumerate(heads):
                    target = _address(context, builder, acc_t, acc, _plus(builder, out_at, sub * SUB + half * 16), _F32x16)
                    part = builder.fmul(builder.sitofp(sums[h], _F32x16), _splat(builder, steps[h], 16))
                    builder.store(builder.fadd(builder.load(target, align=4), part), target, align=4)
        return context.get_dummy_value()

    return sig, codegen
