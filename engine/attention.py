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
from llvmlite import binding as llvm
from llvmlite import ir
from numba import config, njit, prange, types
from numba.extending import intrinsic


def _host_has_f16c() -> bool:
    if config.CPU_NAME not in (None, "host"):
        return False
    try:
        return bool(llvm.get_host_cpu_features().get("f16c", False))
    except RuntimeError:
        return False


HAS_F16C = _host_has_f16c()
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


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def attend_one_token(
    q: np.ndarray, k_bits: np.ndarray, v_bits: np.ndarray, layer: int, n_keys: int, out: np.ndarray
) -> None:
    """Grouped-query attention of one query token over the first n_keys cached positions of `layer`.

    q, out: [n_head, head_dim] float32. k_bits, v_bits: the whole cache as fp16 bits (uint16),
    [block, layer, kv head, position in block, head_dim] (see kv_cache.py).
    Query head h reads KV head h // (n_head / n_head_kv).
    """
    n_head, head_dim = q.shape
    n_kv, block = k_bits.shape[2], k_bits.shape[3]
    group = n_head // n_kv
    n_blocks = (n_keys + block - 1) // block
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for job in prange(n_head):  # one query head per job: with GQA 2 the pair re-reads a row from L1
        kv = job // group
        scores = np.empty(n_keys, dtype=np.float32)
        for b in range(n_blocks):
            count = min(block, n_keys - b * block)
            _key_scores(q, job, k_bits[b, layer, kv], count, scale, scores, b * block)
        best = scores.max()
        total = np.float32(0.0)
        for p in range(n_keys):
            e = exp_nonpositive(scores[p] - best)
            scores[p] = e
            total += e
        inverse = np.float32(1.0) / total
        for p in range(n_keys):
            scores[p] *= inverse
        acc = np.zeros(head_dim, dtype=np.float32)
        for b in range(n_blocks):
            count = min(block, n_keys - b * block)
            _add_values(scores, b * block, v_bits[b, layer, kv], count, acc)
        for i in range(head_dim):
            out[job, i] = acc[i]


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
