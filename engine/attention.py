"""Attention over the fp16 KV cache: the decode kernel (one query token) and prefill's slices.

Decode reads every cached key and value of a layer once per token, so at long contexts it is a
stream of the cache: fp16 halves it against float32 (Bonsai-1.7B at 4,096 positions: 470 MB a
token instead of 940). The kernel converts fp16 to float32 as it reads (vcvtph2ps where the CPU
has F16C), one thread per KV head; the query heads that share a KV head read its rows together.
Softmax uses a float32 exp that LLVM can vectorize (Numba has no vector exp without SVML; a scalar
exp per key cost as much as the reads).

Prefill has many query rows per key, so it converts a slice of the cache to float32 and uses BLAS.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from engine import simd

# Both int8 paths need F16C in the host and in Numba's target (simd.py), and every AVX2 CPU has it:
# under BONSAI_TUI_CPU=avx2 (Numba compiling for Haswell) it is there too. Generic x86-64 lacks it.
HAS_F16C = simd.KERNEL != "generic"
_I32 = ir.IntType(32)


@intrinsic
def half_to_float(typingctx, bits):
    """float32 value of an IEEE half given as its uint16 bits (infinities and NaNs never stored)."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, sig, args):
        (h,) = args
        if HAS_F16C:  # one vcvtph2ps per 16 values once LLVM vectorizes the loop
            return builder.fpext(builder.bitcast(h, ir.HalfType()), ir.FloatType())
        # elsewhere: exponent and mantissa moved into float32's fields, then rebiased by one multiply
        # (which also makes half subnormals come out right); no libcall, still vectorizable
        wide = builder.zext(h, _I32)
        magnitude = builder.shl(builder.and_(wide, ir.Constant(_I32, 0x7FFF)), ir.Constant(_I32, 13))
        rebiased = builder.fmul(builder.bitcast(magnitude, ir.FloatType()), ir.Constant(ir.FloatType(), 2.0**112))
        sign = builder.shl(builder.and_(wide, ir.Constant(_I32, 0x8000)), ir.Constant(_I32, 16))
        return builder.bitcast(builder.or_(builder.bitcast(rebiased, _I32), sign), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def float_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of the integer `bits`."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.trunc(args[0], _I32) if bits.bitwidth > 32 else args[0], ir.FloatType())

    return types.float32(bits), codegen


_LOG2E = np.float32(1.4426950408889634)
_LN2 = np.float32(0.6931471805599453)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def exp_nonpositive(x: np.float32) -> np.float32:
    """exp(x) for x <= 0 (softmax after subtracting the max), relative error ~2e-7.

    x = n ln2 + r with |r| <= ln2/2; exp(r) by its Taylor series to r^7; 2^n built in the exponent
    field. Below -87 the result is 0 (exp(-87) is 1.6e-38: negligible against the max's 1).
    """
    x = max(x, np.float32(-87.0))
    n = np.float32(math.floor(x * _LOG2E + np.float32(0.5)))
    r = x - n * _LN2
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    return p * float_from_bits((np.int32(n) + 127) << 23)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _key_scores(q: np.ndarray, h: int, rows: np.ndarray, count: int, scale: np.float32, scores: np.ndarray, at: int) -> None:
    """scores[at + p] = scale * q[h] · rows[p] for p < count, four positions at a time.

    Four independent sums: one sum's vector adds form a latency chain that ran at a third of the
    FMA rate.
    """
    head_dim = q.shape[1]
    p = 0
    while p + 4 <= count:
        s0 = np.float32(0.0)
        s1 = np.float32(0.0)
        s2 = np.float32(0.0)
        s3 = np.float32(0.0)
        for i in range(head_dim):
            x = q[h, i]
            s0 += x * half_to_float(rows[p, i])
            s1 += x * half_to_float(rows[p + 1, i])
            s2 += x * half_to_float(rows[p + 2, i])
            s3 += x * half_to_float(rows[p + 3, i])
        scores[at + p] = s0 * scale
        scores[at + p + 1] = s1 * scale
        scores[at + p + 2] = s2 * scale
        scores[at + p + 3] = s3 * scale
        p += 4
    while p < count:
        s = np.float32(0.0)
        for i in range(head_dim):
            s += q[h, i] * half_to_float(rows[p, i])
        scores[at + p] = s * scale
        p += 1


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _key_scores_pair(
    q: np.ndarray, h: int, rows: np.ndarray, count: int, scale: np.float32, scores: np.ndarray, g: int, at: int
) -> None:
    """_key_scores for query heads h and h+1 (into scores[g] and scores[g+1]): each key converted
    once for both, eight independent sums."""
    head_dim = q.shape[1]
    p = 0
    while p + 4 <= count:
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        b0 = np.float32(0.0)
        b1 = np.float32(0.0)
        b2 = np.float32(0.0)
        b3 = np.float32(0.0)
        for i in range(head_dim):
            x = q[h, i]
            y = q[h + 1, i]
            k0 = half_to_float(rows[p, i])
            k1 = half_to_float(rows[p + 1, i])
            k2 = half_to_float(rows[p + 2, i])
            k3 = half_to_float(rows[p + 3, i])
            a0 += x * k0
            a1 += x * k1
            a2 += x * k2
            a3 += x * k3
            b0 += y * k0
            b1 += y * k1
            b2 += y * k2
            b3 += y * k3
        scores[g, at + p] = a0 * scale
        scores[g, at + p + 1] = a1 * scale
        scores[g, at + p + 2] = a2 * scale
        scores[g, at + p + 3] = a3 * scale
        scores[g + 1, at + p] = b0 * scale
        scores[g + 1, at + p + 1] = b1 * scale
        scores[g + 1, at + p + 2] = b2 * scale
        scores[g + 1, at + p + 3] = b3 * scale
        p += 4
    while p < count:
        a = np.float32(0.0)
        b = np.float32(0.0)
        for i in range(head_dim):
            k = half_to_float(rows[p, i])
            a += q[h, i] * k
            b += q[h + 1, i] * k
        scores[g, at + p] = a * scale
        scores[g + 1, at + p] = b * scale
        p += 1


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _add_values(weights: np.ndarray, at: int, rows: np.ndarray, count: int, acc: np.ndarray) -> None:
    """acc += sum over p < count of weights[at + p] * rows[p], four positions per pass over acc."""
    head_dim = acc.shape[0]
    p = 0
    while p + 4 <= count:
        w0, w1, w2, w3 = weights[at + p], weights[at + p + 1], weights[at + p + 2], weights[at + p + 3]
        for i in range(head_dim):
            acc[i] += (w0 * half_to_float(rows[p, i]) + w1 * half_to_float(rows[p + 1, i])) + (
                w2 * half_to_float(rows[p + 2, i]) + w3 * half_to_float(rows[p + 3, i])
            )
        p += 4
    while p < count:
        w = weights[at + p]
        for i in range(head_dim):
            acc[i] += w * half_to_float(rows[p, i])
        p += 1


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _add_values_pair(weights: np.ndarray, g: int, at: int, rows: np.ndarray, count: int, acc: np.ndarray) -> None:
    """_add_values for heads g and g+1 (weights[g], acc[g] and the next): each value converted once."""
    head_dim = acc.shape[1]
    p = 0
    while p + 4 <= count:
        a0, a1, a2, a3 = weights[g, at + p], weights[g, at + p + 1], weights[g, at + p + 2], weights[g, at + p + 3]
        b0, b1 = weights[g + 1, at + p], weights[g + 1, at + p + 1]
        b2, b3 = weights[g + 1, at + p + 2], weights[g + 1, at + p + 3]
        for i in range(head_dim):
            v0 = half_to_float(rows[p, i])
            v1 = half_to_float(rows[p + 1, i])
            v2 = half_to_float(rows[p + 2, i])
            v3 = half_to_float(rows[p + 3, i])
            acc[g, i] += (a0 * v0 + a1 * v1) + (a2 * v2 + a3 * v3)
            acc[g + 1, i] += (b0 * v0 + b1 * v1) + (b2 * v2 + b3 * v3)
        p += 4
    while p < count:
        a, b = weights[g, at + p], weights[g + 1, at + p]
        for i in range(head_dim):
            v = half_to_float(rows[p, i])
            acc[g, i] += a * v
            acc[g + 1, i] += b * v
        p += 1


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _softmax_in_place(row: np.ndarray) -> None:
    best = row.max()
    total = np.float32(0.0)
    for p in range(row.shape[0]):
        e = exp_nonpositive(row[p] - best)
        row[p] = e
        total += e
    inverse = np.float32(1.0) / total
    for p in range(row.shape[0]):
        row[p] *= inverse


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def attend_one_token(
    q: np.ndarray, k_bits: np.ndarray, v_bits: np.ndarray, layer: int, n_keys: int, out: np.ndarray
) -> None:
    """Grouped-query attention of one query token over the first n_keys cached positions of `layer`.

    q, out: [n_head, head_dim] float32. k_bits, v_bits: the whole cache as fp16 bits (uint16),
    [block, layer, kv head, position in block, head_dim] (see kv_cache.py).
    Query head h reads KV head h // (n_head / n_head_kv). One job per KV head: its query heads go
    through its keys and values two at a time, so each fp16 row is converted once per pair.
    """
    n_head, head_dim = q.shape
    n_kv, block = k_bits.shape[2], k_bits.shape[3]
    group = n_head // n_kv
    pairs = group // 2
    n_blocks = (n_keys + block - 1) // block
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for kv in prange(n_kv):
        first = kv * group
        scores = np.empty((group, n_keys), dtype=np.float32)
        for b in range(n_blocks):
            count = min(block, n_keys - b * block)
            rows = k_bits[b, layer, kv]
            for pair in range(pairs):
                _key_scores_pair(q, first + 2 * pair, rows, count, scale, scores, 2 * pair, b * block)
            if group % 2:
                _key_scores(q, first + group - 1, rows, count, scale, scores[group - 1], b * block)
        for g in range(group):
            _softmax_in_place(scores[g])
        acc = np.zeros((group, head_dim), dtype=np.float32)
        for b in range(n_blocks):
            count = min(block, n_keys - b * block)
            rows = v_bits[b, layer, kv]
            for pair in range(pairs):
                _add_values_pair(scores, 2 * pair, b * block, rows, count, acc)
            if group % 2:
                _add_values(scores[group - 1], b * block, rows, count, acc[group - 1])
        for g in range(group):
            for i in range(head_dim):
                out[first + g, i] = acc[g, i]


def attend_rows(
    q: np.ndarray, keys: np.ndarray, values: np.ndarray, kv: int, group: int, rows: slice, start_pos: int,
    out: np.ndarray,
) -> None:
    """Prefill attention of query rows `rows` (at positions start_pos + row) for the query heads of
    KV head `kv`: causal softmax(q·kᵀ/√d)·v as two BLAS matmuls.

    keys, values: float32 [end, head_dim], that head's cache up to the slice's last row (end =
    start_pos + rows.stop), converted from fp16 for this slice only.
    """
    heads = slice(kv * group, (kv + 1) * group)
    end = len(keys)
    queries = q[rows, heads].transpose(1, 0, 2)  # [group, rows, head_dim]
    scores = queries @ keys.T  # [group, rows, end]; updated in place: it is the big temporary
    scores *= np.float32(1 / np.sqrt(q.shape[2]))
    future = np.arange(end)[None, :] > (start_pos + np.arange(rows.start, rows.stop))[:, None]
    scores[:, future] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out[rows, heads] = (scores @ values).transpose(1, 0, 2)
