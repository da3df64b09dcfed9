"""Q2_0's int8 vector steps on the rows-in-lanes layout of q2_lanes.py (simd.py has Q1_0's and the IR helpers).

A Q2_0 weight is (q - 1) * d for a 2-bit code q, so for one row and one activation row x (int8
codes per 32-block, scale s_sub):
    sum w*x = d * (sum over sub of s_sub * S_sub  -  corr),  S_sub = sum of q*x over the sub-block
and corr = sum over sub of s_sub * sum(x_sub) is the same for every row (computed once per activation
row, lanes.quantize_rows). The codes are 0..3, so they are vpdpbusd's unsigned operand as they are,
and the signed one is the activations, broadcast 4 at a time to every lane.

Per 64-column block of 16 rows the layout holds 32 words: for each 4-column step s, word 2s has the
codes' low bits and word 2s + 1 their high bits, bit 4*i + j = row i, column 4*s + j (as Q1_0's sign
words). A step turns its two words into 64 code bytes (one lane of 4 per row):
    AVX-512: two 64-lane masks select 1 and 2, OR-ed (kmovq, masked moves, vporq); then one vpdpbusd
             per activation row.
    AVX2:    per half (8 rows), each 32-bit half word spread to bytes and tested (as simd.py),
             1 and 2 kept and OR-ed; vpmaddubsw(codes, x) per activation row into int16 sums
             (at most 8 steps x 2 x 3 x 127 = 6,096), then vpmaddwd to int32.
The same intrinsic serves the decode GEMV (1 activation row) and the prefill GEMM (GEMM_TOKENS rows,
each step's code bytes built once for all of them).

Numba's on-disk cache of a kernel is keyed on the file that defines it (q2_lanes.py), not this one:
after editing this file, touch q2_lanes.py (or delete engine/__pycache__).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from engine.simd import (
    _F32, _I8, _I16x16, _I32, _I32x8, _I32x16, _I64, _BIT_OF_BYTE, _SPREAD, _F32x8, _F32x16, _I8x32, _I8x64,
    _MASK64, _REPEAT4, _function, _load, _pointer, _scales_as_float, _splat,
)

BLOCK = 64  # columns per block: a g64 block, half a g128 one (both repack to this)
STEPS = 16  # 4-column steps per block
WORDS = 2 * STEPS  # two bit planes per step
SUB_STEPS = 8  # steps per 32-column activation block
GEMM_TOKENS = {"avx512": 8, "avx2": 4}  # activation rows per GEMM step (registers: as simd.py's Q1_0 GEMM)


def _codes_avx512(builder, low, high):
    """<64 x i8> codes (0..3) of 16 rows x 4 columns from the two plane words (i64)."""
    ones, twos, zero = (ir.Constant(_I8x64, [v] * 64) for v in (1, 2, 0))
    low_bits = builder.select(builder.bitcast(low, _MASK64), ones, zero)
    return builder.or_(low_bits, builder.select(builder.bitcast(high, _MASK64), twos, zero))


def _bytes_where_set_avx2(builder, half_word, value: int):
    """<32 x i8>: `value` where bit k of the 32-bit half word is set, zero elsewhere."""
    as_bytes = builder.bitcast(half_word, ir.VectorType(_I8, 4))
    spread = builder.shuffle_vector(as_bytes, ir.Constant(ir.VectorType(_I8, 4), None), _SPREAD)
    is_set = builder.icmp_unsigned("==", builder.and_(spread, _BIT_OF_BYTE), _BIT_OF_BYTE)
    return builder.select(is_set, ir.Constant(_I8x32, [value] * 32), ir.Constant(_I8x32, None))


def _codes_avx2(builder, low, high):
    """<32 x i8> codes of 8 rows x 4 columns from the two 32-bit half words."""
    return builder.or_(_bytes_where_set_avx2(builder, low, 1), _bytes_where_set_avx2(builder, high, 2))


def _block_step(isa: str, tokens: int):
    """The intrinsic for one 64-column block of 16 rows times `tokens` activation rows."""
    wide = isa == "avx512"
    halves, lanes = (1, 16) if wide else (2, 8)
    chains = 2 if wide and tokens == 1 else 1  # the GEMV's vpdpbusd chains are short: two per sub-block

    @intrinsic
    def step(typingctx, acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs, xs_at, corr, corr_at, n_blocks):
        """acc[acc_at + t*acc_stride : +16] += rows . activation row t, for t < tokens: the block is
        words[word_at : +32] and scales[scale_at : +16]; row t's activations are xq[x_at + t*n_blocks*64
        : +64], its scales xs[xs_at + t*n_blocks*2 : +2] and its correction corr[corr_at + t*n_blocks]."""
        sig = types.void(acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs, xs_at, corr, corr_at, n_blocks)

        def codegen(context, builder, signature, args):
            acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs, xs_at, corr, corr_at, n_blocks = args
            acc_t, _, _, words_t, _, scales_t, _, xq_t, _, xs_t, _, corr_t, _, _ = signature.args
            if wide:
                dot4 = _function(builder, "llvm.x86.avx512.vpdpbusd.512", _I32x16, _I32x16, _I32x16, _I32x16)
            else:
                pairs = _function(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, _I8x32, _I8x32)
                quads = _function(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, _I16x16, _I16x16)
            sum_type, float_type = (_I32x16, _F32x16) if wide else (_I16x16, _F32x8)
            at = lambda start, per_block, t: builder.add(start, builder.mul(n_blocks, ir.Constant(n_blocks.type, per_block * t)))  # noqa: E731

            def word(k: int, half: int):
                if wide:
                    return _load(builder, _pointer(context, builder, words_t, words, word_at, _I64, 8 * k), align=8)
                return _load(builder, _pointer(context, builder, words_t, words, word_at, _I32, 8 * k + 4 * half), align=4)

            def activations(t: int, k: int):
                four = _load(builder, _pointer(context, builder, xq_t, xq, at(x_at, BLOCK, t), ir.VectorType(_I8, 4), 4 * k))
                if wide:
                    return _splat(builder, builder.bitcast(four, _I32), 16)
                return builder.shuffle_vector(four, ir.Constant(four.type, None), _REPEAT4)

            for half in range(halves):
                totals = [None] * tokens
                for sub in range(BLOCK // 32):
                    sums = [[ir.Constant(sum_type, None)] * chains for _ in range(tokens)]
                    for step_in_sub in range(SUB_STEPS):
                        k = sub * SUB_STEPS + step_in_sub
                        low, high = word(2 * k, half), word(2 * k + 1, half)
                        chain = step_in_sub % chains
                        if wide:
                            codes = builder.bitcast(_codes_avx512(builder, low, high), _I32x16)
                            for t in range(tokens):
                                sums[t][chain] = builder.call(dot4, [sums[t][chain], codes, activations(t, k)])
                        else:
                            codes = _codes_avx2(builder, low, high)
                            for t in range(tokens):
                                sums[t][0] = builder.add(sums[t][0], builder.call(pairs, [codes, activations(t, k)]))
                    for t in range(tokens):
                        whole = sums[t][0]
                        for more in sums[t][1:]:
                            whole = builder.add(whole, more)
                        if not wide:
                            whole = builder.call(quads, [whole, ir.Constant(_I16x16, [1] * 16)])
                        s = _load(builder, _pointer(context, builder, xs_t, xs, at(xs_at, 2, t), _F32, 4 * sub), align=4)
                        part = builder.fmul(builder.sitofp(whole, float_type), _splat(builder, s, lanes))
                        totals[t] = part if totals[t] is None else builder.fadd(totals[t], part)
                d = _scales_as_float(context, builder, scales_t, scales, scale_at, lanes, first=lanes * half)
                for t in range(tokens):
                    c = _load(builder, _pointer(context, builder, corr_t, corr, at(corr_at, 1, t), _F32), align=4)
                    out_at = builder.add(acc_at, builder.mul(acc_stride, ir.Constant(acc_stride.type, t)))
                    acc_ptr = _pointer(context, builder, acc_t, acc, out_at, float_type, 4 * lanes * half)
                    product = builder.fmul(d, builder.fsub(totals[t], _splat(builder, c, lanes)))
                    builder.store(builder.fadd(_load(builder, acc_ptr, 4), product), acc_ptr, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return step


block_dot_avx512, block_gemm_avx512 = _block_step("avx512", 1), _block_step("avx512", GEMM_TOKENS["avx512"])
block_dot_avx2, block_gemm_avx2 = _block_step("avx2", 1), _block_step("avx2", GEMM_TOKENS["avx2"])
