"""The int8 kernels' vector steps, as LLVM IR through Numba's @intrinsic, and which of them this CPU runs.

Numba cannot express "use these 64 bits as a lane mask" or VNNI's 4-byte dot product (vpdpbusd),
and LLVM does not find them in plain loops. Each step here works on the "rows in lanes" layout of
lanes.py: one 64-bit word holds 4 consecutive columns of 16 rows (bit 4*i + j = row i, column
4*s + j of step s), so every 32-bit lane of a vector is one row and no horizontal sum is needed.

Per Q1_0 block (128 columns) of 16 rows and one activation row (int8 codes x per 32-block, scale s):
    S_sub[row] = sum of x[j] over the columns j of sub-block `sub` whose bit is set (integers)
    acc[row]  += d[row] * (sum over sub of 2*s_sub*S_sub[row]  -  sum over sub of s_sub*sum(x_sub))
because a weight is +d or -d: sum w*x = d*(2*sum_set x - sum x). The second term (`corr`) is the
same for every row and is computed once per activation row (lanes.quantize_rows).

AVX-512 (KERNEL "avx512", needs BW + VNNI), per step of 4 columns:
    the word is a 64-lane mask; x[4s..4s+3] broadcast to every lane; masked move keeps the set
    bytes; vpdpbusd(acc, ones, kept) adds each lane's 4 bytes: 3 instructions for 64 weights.
AVX2 (KERNEL "avx2", needs AVX2 + F16C), per step and half (8 rows):
    32 bits spread to 32 bytes (vpshufb), tested against each byte's bit (vpand + vpcmpeqb), the
    broadcast x kept where set, vpmaddubsw(ones, kept) sums pairs into int16, added up over the
    8 steps of a sub-block, then vpmaddwd(int16 sums, ones) makes one int32 per row.
Elsewhere (KERNEL "generic") there is no int8 kernel: the exact float lookup table serves.

Numba's on-disk cache of a kernel is keyed on the file that defines it (lanes.py), not this one:
after editing this file, touch lanes.py (or delete engine/__pycache__).
"""

from __future__ import annotations

from llvmlite import binding as llvm
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.cpu import requested_cap

ROWS = 16  # rows per lane group: 16 int32 lanes of a 512-bit vector, or two 256-bit halves
STEP_COLS = 4  # columns per 64-bit word (4 x 16 rows)
STEPS = 32  # words per Q1_0 block of 128 columns
SUB_STEPS = 8  # words per 32-column activation block
GEMM_TOKENS = 8  # activation rows per AVX-512 GEMM step: 8 int32 + 8 float accumulators in registers

_I8, _I16, _I32, _I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_F32 = ir.FloatType()

# LLVM CPU names whose features include AVX2, FMA and F16C (for a NUMBA_CPU_NAME set by hand)
_AVX2_CPUS = {"haswell", "broadwell", "skylake", "alderlake", "znver1", "znver2", "znver3", "x86-64-v3"}


def _host_features() -> dict[str, bool]:
    try:
        return dict(llvm.get_host_cpu_features())
    except RuntimeError:  # LLVM cannot tell on this platform
        return {}


def _kernel_path() -> str:
    """The widest int8 path that the host has, Numba's target allows, and BONSAI_TUI_CPU permits."""
    host = _host_features()
    has = lambda *names: all(host.get(n, False) for n in names)  # noqa: E731
    best = "avx512" if has("avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx2", "f16c") else (
        "avx2" if has("avx2", "fma", "f16c") else "generic")
    target = config.CPU_NAME
    if requested_cap() != "avx512" and best != "generic" and target in (None, "host"):
        # Numba was imported before engine applied the cap: it compiles for this CPU, and its cache
        # would hand this process the uncapped kernels, whose tiles do not match the capped code's
        raise SystemExit(f"BONSAI_TUI_CPU={requested_cap()}: import engine before numba (Numba already targets this CPU)")
    if target not in (None, "host"):  # Numba compiles for another CPU: at most what that one has
        best = "avx2" if best != "generic" and target in _AVX2_CPUS else "generic"
    order = ("generic", "avx2", "avx512")
    return order[min(order.index(best), order.index(requested_cap()))]


KERNEL = _kernel_path()
AVAILABLE = KERNEL != "generic"  # an int8 kernel exists for this process


# ---- IR helpers -------------------------------------------------------------------------------


def _pointer(context, builder, array_type, array, index, pointee: ir.Type, byte_offset: int = 0):
    """Address of array[index] (a flat, contiguous array) plus byte_offset, as a pointer to `pointee`."""
    data = context.make_array(array_type)(context, builder, array).data
    at = builder.bitcast(builder.gep(data, [index]), _I8.as_pointer())
    if byte_offset:
        at = builder.gep(at, [ir.Constant(_I64, byte_offset)])
    return builder.bitcast(at, pointee.as_pointer())


def _load(builder, pointer, align=1):
    return builder.load(pointer, align=align)


def _splat(builder, value, lanes: int):
    vector = ir.VectorType(value.type, lanes)
    first = builder.insert_element(ir.Constant(vector, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(first, ir.Constant(vector, None), ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def _scales_as_float(context, builder, scales_t, scales, scale_at, lanes: int, first: int = 0):
    """`lanes` fp16 row scales from scales[scale_at + first], as floats (vcvtph2ps)."""
    halves = _load(builder, _pointer(context, builder, scales_t, scales, scale_at, ir.VectorType(_I16, lanes), 2 * first))
    return builder.fpext(builder.bitcast(halves, ir.VectorType(ir.HalfType(), lanes)), ir.VectorType(_F32, lanes))


def _function(builder, name: str, result: ir.Type, *arguments: ir.Type):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(result, list(arguments)), name)


# ---- AVX-512 VNNI -----------------------------------------------------------------------------

_I32x16, _F32x16 = ir.VectorType(_I32, 16), ir.VectorType(_F32, 16)
_I8x64, _MASK64 = ir.VectorType(_I8, 64), ir.VectorType(ir.IntType(1), 64)


def _set_bytes_avx512(builder, word, value64):
    """The bytes of value64 (<64 x i8>) where the word's bit is set, zero elsewhere (a masked move)."""
    return builder.select(builder.bitcast(word, _MASK64), value64, ir.Constant(_I8x64, None))


def _broadcast4(context, builder, xq_t, xq, x_at, step: int, lanes: int):
    """x[x_at + 4*step .. +3] (4 int8) repeated in every 32-bit lane, as <lanes x i32>."""
    four = _load(builder, _pointer(context, builder, xq_t, xq, x_at, _I32, STEP_COLS * step))
    return _splat(builder, four, lanes)


@intrinsic
def block_dot_avx512(typingctx, acc, acc_at, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at):
    """acc[acc_at : +16] += the 16 rows' products of one block (words[word_at : +32], scales
    [scale_at : +16]) with one activation row (xq[x_at : +128], xs2[xs2_at : +4], corr[corr_at])."""
    sig = types.void(acc, acc_at, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at)

    def codegen(context, builder, signature, args):
        acc, acc_at, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at = args
        acc_t, _, words_t, _, scales_t, _, xq_t, _, xs2_t, _, corr_t, _ = signature.args
        dot4 = _function(builder, "llvm.x86.avx512.vpdpbusd.512", _I32x16, _I32x16, _I32x16, _I32x16)
        ones = ir.Constant(_I32x16, [0x01010101] * 16)
        sums = [ir.Constant(_I32x16, None)] * 4  # one chain per 32-column sub-block: independent
        for step in range(SUB_STEPS):
            for sub in range(4):
                k = sub * SUB_STEPS + step
                word = _load(builder, _pointer(context, builder, words_t, words, word_at, _I64, 8 * k), align=8)
                x4 = builder.bitcast(_broadcast4(context, builder, xq_t, xq, x_at, k, 16), _I8x64)
                kept = builder.bitcast(_set_bytes_avx512(builder, word, x4), _I32x16)
                sums[sub] = builder.call(dot4, [sums[sub], ones, kept])
        total = None
        for sub in range(4):
            s2 = _load(builder, _pointer(context, builder, xs2_t, xs2, xs2_at, _F32, 4 * sub), align=4)
            part = builder.fmul(builder.sitofp(sums[sub], _F32x16), _splat(builder, s2, 16))
            total = part if total is None else builder.fadd(total, part)
        c = _load(builder, _pointer(context, builder, corr_t, corr, corr_at, _F32), align=4)
        d = _scales_as_float(context, builder, scales_t, scales, scale_at, 16)
        acc_ptr = _pointer(context, builder, acc_t, acc, acc_at, _F32x16)
        product = builder.fmul(d, builder.fsub(total, _splat(builder, c, 16)))
        builder.store(builder.fadd(_load(builder, acc_ptr, 4), product), acc_ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def block_gemm_avx512(typingctx, acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at, n_blocks):
    """block_dot_avx512 for GEMM_TOKENS activation rows at once: row t's activations are at
    x_at + t*n_blocks*128 (xs2: +t*n_blocks*4, corr: +t*n_blocks) and its output at acc_at + t*acc_stride.
    Each 4-column step expands the weights to 0/1 bytes once and feeds them to every row's vpdpbusd."""
    sig = types.void(acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at, n_blocks)

    def codegen(context, builder, signature, args):
        acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at, n_blocks = args
        acc_t, _, _, words_t, _, scales_t, _, xq_t, _, xs2_t, _, corr_t, _, _ = signature.args
        dot4 = _function(builder, "llvm.x86.avx512.vpdpbusd.512", _I32x16, _I32x16, _I32x16, _I32x16)
        ones = ir.Constant(_I8x64, [1] * 64)
        rows = range(GEMM_TOKENS)
        x_ats = [builder.add(x_at, builder.mul(n_blocks, ir.Constant(n_blocks.type, 128 * t))) for t in rows]
        s_ats = [builder.add(xs2_at, builder.mul(n_blocks, ir.Constant(n_blocks.type, 4 * t))) for t in rows]
        totals = [None] * GEMM_TOKENS
        for sub in range(4):
            sums = [ir.Constant(_I32x16, None)] * GEMM_TOKENS
            for step in range(SUB_STEPS):
                k = sub * SUB_STEPS + step
                word = _load(builder, _pointer(context, builder, words_t, words, word_at, _I64, 8 * k), align=8)
                bits01 = builder.bitcast(_set_bytes_avx512(builder, word, ones), _I32x16)
                for t in rows:
                    x4 = _broadcast4(context, builder, xq_t, xq, x_ats[t], k, 16)
                    sums[t] = builder.call(dot4, [sums[t], bits01, x4])
            for t in rows:
                s2 = _load(builder, _pointer(context, builder, xs2_t, xs2, s_ats[t], _F32, 4 * sub), align=4)
                part = builder.fmul(builder.sitofp(sums[t], _F32x16), _splat(builder, s2, 16))
                totals[t] = part if totals[t] is None else builder.fadd(totals[t], part)
        d = _scales_as_float(context, builder, scales_t, scales, scale_at, 16)
        for t in rows:
            c_at = builder.add(corr_at, builder.mul(n_blocks, ir.Constant(n_blocks.type, t)))
            c = _load(builder, _pointer(context, builder, corr_t, corr, c_at, _F32), align=4)
            out_at = builder.add(acc_at, builder.mul(acc_stride, ir.Constant(acc_stride.type, t)))
            acc_ptr = _pointer(context, builder, acc_t, acc, out_at, _F32x16)
            product = builder.fmul(d, builder.fsub(totals[t], _splat(builder, c, 16)))
            builder.store(builder.fadd(_load(builder, acc_ptr, 4), product), acc_ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


# ---- AVX2 -------------------------------------------------------------------------------------

_I8x32, _I16x16, _I32x8, _F32x8 = (ir.VectorType(t, n) for t, n in ((_I8, 32), (_I16, 16), (_I32, 8), (_F32, 8)))
_SPREAD = ir.Constant(ir.VectorType(_I32, 32), [k // 8 for k in range(32)])  # byte k <- word byte k/8
_BIT_OF_BYTE = ir.Constant(_I8x32, [1 << (k % 8) for k in range(32)])  # byte k tests bit k of the word
_REPEAT4 = ir.Constant(ir.VectorType(_I32, 32), [k % 4 for k in range(32)])


def _set_bytes_avx2(builder, half_word, value32):
    """The bytes of value32 (<32 x i8>) where bit k of the 32-bit half word is set, zero elsewhere."""
    as_bytes = builder.bitcast(half_word, ir.VectorType(_I8, 4))
    spread = builder.shuffle_vector(as_bytes, ir.Constant(ir.VectorType(_I8, 4), None), _SPREAD)
    is_set = builder.icmp_unsigned("==", builder.and_(spread, _BIT_OF_BYTE), _BIT_OF_BYTE)
    return builder.select(is_set, value32, ir.Constant(_I8x32, None))


@intrinsic
def block_dot_avx2(typingctx, acc, acc_at, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at):
    """block_dot_avx512 with AVX2 instructions (same arguments, same result)."""
    sig = types.void(acc, acc_at, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at)

    def codegen(context, builder, signature, args):
        acc, acc_at, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at = args
        acc_t, _, words_t, _, scales_t, _, xq_t, _, xs2_t, _, corr_t, _ = signature.args
        pairs = _function(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, _I8x32, _I8x32)
        quads = _function(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, _I16x16, _I16x16)
        ones8, ones16 = ir.Constant(_I8x32, [1] * 32), ir.Constant(_I16x16, [1] * 16)
        c = _splat(builder, _load(builder, _pointer(context, builder, corr_t, corr, corr_at, _F32), align=4), 8)
        for half in range(2):  # rows 8*half .. 8*half+7: bits 32*half .. 32*half+31 of each word
            total = None
            for sub in range(4):
                sums = ir.Constant(_I16x16, None)  # int16 is safe: 8 steps x 2 x 127 at most
                for step in range(SUB_STEPS):
                    k = sub * SUB_STEPS + step
                    half_word = _load(builder, _pointer(context, builder, words_t, words, word_at, _I32, 8 * k + 4 * half), align=4)
                    four = _load(builder, _pointer(context, builder, xq_t, xq, x_at, ir.VectorType(_I8, 4), STEP_COLS * k))
                    x4 = builder.shuffle_vector(four, ir.Constant(four.type, None), _REPEAT4)
                    sums = builder.add(sums, builder.call(pairs, [ones8, _set_bytes_avx2(builder, half_word, x4)]))
                s2 = _load(builder, _pointer(context, builder, xs2_t, xs2, xs2_at, _F32, 4 * sub), align=4)
                part = builder.fmul(builder.sitofp(builder.call(quads, [sums, ones16]), _F32x8), _splat(builder, s2, 8))
                total = part if total is None else builder.fadd(total, part)
            d = _scales_as_float(context, builder, scales_t, scales, scale_at, 8, first=8 * half)
            acc_ptr = _pointer(context, builder, acc_t, acc, acc_at, _F32x8, 4 * 8 * half)
            product = builder.fmul(d, builder.fsub(total, c))
            builder.store(builder.fadd(_load(builder, acc_ptr, 4), product), acc_ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


GEMM_TOKENS_AVX2 = 4  # 16 ymm registers: 4 int16 + 4 float accumulators, the weights and a broadcast


@intrinsic
def block_gemm_avx2(typingctx, acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at, n_blocks):
    """block_gemm_avx512 with AVX2 instructions, for GEMM_TOKENS_AVX2 activation rows (same arguments).
    Per step and half, the weights become 0/1 bytes once; each row then costs one vpmaddubsw and one add."""
    sig = types.void(acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at, n_blocks)

    def codegen(context, builder, signature, args):
        acc, acc_at, acc_stride, words, word_at, scales, scale_at, xq, x_at, xs2, xs2_at, corr, corr_at, n_blocks = args
        acc_t, _, _, words_t, _, scales_t, _, xq_t, _, xs2_t, _, corr_t, _, _ = signature.args
        pairs = _function(builder, "llvm.x86.avx2.pmadd.ub.sw", _I16x16, _I8x32, _I8x32)
        quads = _function(builder, "llvm.x86.avx2.pmadd.wd", _I32x8, _I16x16, _I16x16)
        ones8, ones16 = ir.Constant(_I8x32, [1] * 32), ir.Constant(_I16x16, [1] * 16)
        rows = range(GEMM_TOKENS_AVX2)
        at = lambda start, per_block, t: builder.add(start, builder.mul(n_blocks, ir.Constant(n_blocks.type, per_block * t)))  # noqa: E731
        for half in range(2):
            totals = [None] * GEMM_TOKENS_AVX2
            for sub in range(4):
                sums = [ir.Constant(_I16x16, None)] * GEMM_TOKENS_AVX2
                for step in range(SUB_STEPS):
                    k = sub * SUB_STEPS + step
                    half_word = _load(builder, _pointer(context, builder, words_t, words, word_at, _I32, 8 * k + 4 * half), align=4)
                    bits01 = _set_bytes_avx2(builder, half_word, ones8)
                    for t in rows:
                        four = _load(builder, _pointer(context, builder, xq_t, xq, at(x_at, 128, t), ir.VectorType(_I8, 4), STEP_COLS * k))
                        x4 = builder.shuffle_vector(four, ir.Constant(four.type, None), _REPEAT4)
                        sums[t] = builder.add(sums[t], builder.call(pairs, [bits01, x4]))
                for t in rows:
                    s2 = _load(builder, _pointer(context, builder, xs2_t, xs2, at(xs2_at, 4, t), _F32, 4 * sub), align=4)
                    part = builder.fmul(builder.sitofp(builder.call(quads, [sums[t], ones16]), _F32x8), _splat(builder, s2, 8))
                    totals[t] = part if totals[t] is None else builder.fadd(totals[t], part)
            d = _scales_as_float(context, builder, scales_t, scales, scale_at, 8, first=8 * half)
            for t in rows:
                c = _load(builder, _pointer(context, builder, corr_t, corr, at(corr_at, 1, t), _F32), align=4)
                out_at = builder.add(acc_at, builder.mul(acc_stride, ir.Constant(acc_stride.type, t)))
                acc_ptr = _pointer(context, builder, acc_t, acc, out_at, _F32x8, 4 * 8 * half)
                product = builder.fmul(d, builder.fsub(totals[t], _splat(builder, c, 8)))
                builder.store(builder.fadd(_load(builder, acc_ptr, 4), product), acc_ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen
