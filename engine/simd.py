"""One hand-written vector step for the int8 decode kernel, as LLVM IR through Numba's @intrinsic.

Numba cannot express "use these 64 bits as a lane mask" or AVX-512 VNNI's 4-byte dot product
(vpdpbusd), and LLVM does not find them in plain loops: a 1-bit GEMV written in Numba runs at
~35 G weights/s with a float lookup table, and at ~68 with this step, which is what llama.cpp's own
kernels do for Q1_0 x Q8_0. The int8 decode path (kernels.q1_gemv_q8) uses it only where the CPU
has AVX-512 BW and VNNI (AVAILABLE); elsewhere the float lookup-table kernel serves.

One step takes one 128-weight Q1_0 block and the matching 128 int8 activations:
    signed = bit j ? x[j] : -x[j]             (a select on a 64-bit mask, twice)
    lanes  = vpdpbusd(0, ones, signed)        (16 int32 lanes, each the sum of 4 neighbours)
    acc   += d * (lanes * lane_scales)        (lane i of 64 covers 4 activations of one 32-block,
                                               so the Q8 scale of that block is a per-lane factor)
acc is a 16-float partial sum per output row; the caller sums its lanes once per row.

Numba's on-disk cache of kernels.q1_gemv_q8 is keyed on kernels.py alone: after editing this
file, touch kernels.py (or delete engine/__pycache__) so the kernel compiles again.
"""

from __future__ import annotations

from llvmlite import binding as llvm
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16  # int32 / float32 lanes in a 512-bit vector
LANE_WEIGHTS = 4  # activations summed into one lane by vpdpbusd

_I8x64 = ir.VectorType(ir.IntType(8), 64)
_I32x16 = ir.VectorType(ir.IntType(32), LANES)
_F32x16 = ir.VectorType(ir.FloatType(), LANES)
_MASK64 = ir.VectorType(ir.IntType(1), 64)


def _host_has_vnni() -> bool:
    if config.CPU_NAME not in (None, "host"):  # compiling for another CPU: features unknown
        return False
    try:
        features = llvm.get_host_cpu_features()
    except RuntimeError:  # LLVM cannot tell on this platform
        return False
    return all(features.get(name, False) for name in ("avx512f", "avx512bw", "avx512vnni", "f16c"))


AVAILABLE = _host_has_vnni()


def _element_pointer(context, builder, array_type, array, index, pointee: ir.Type):
    """Address of array[index] (a flat, contiguous array), typed as a pointer to `pointee`."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), pointee.as_pointer())


def _offset(builder, index, delta: int):
    return builder.add(index, ir.Constant(index.type, delta))


@intrinsic
def q1_block_q8_accumulate(typingctx, acc, acc_at, tiles, block_at, xq, neg_xq, x_at, lane_scales, scale_at):
    """acc[acc_at : acc_at+16] += d * lane sums of block tiles[block_at : block_at+18] times xq[x_at : x_at+128].

    All arrays flat: tiles uint8, xq / neg_xq int8 (neg_xq = -xq), lane_scales float32 (the Q8
    scale of each lane's 32-block: 32 per Q1 block), acc float32.
    """
    signature = types.void(acc, acc_at, tiles, block_at, xq, neg_xq, x_at, lane_scales, scale_at)

    def codegen(context, builder, sig, args):
        acc, acc_at, tiles, block_at, xq, neg_xq, x_at, lane_scales, scale_at = args
        acc_t, _, tiles_t, _, xq_t, neg_t, _, scales_t, _ = sig.args
        block = _element_pointer(context, builder, tiles_t, tiles, block_at, ir.IntType(8))
        half_d = builder.load(builder.bitcast(block, ir.IntType(16).as_pointer()), align=1)
        d = builder.fpext(builder.bitcast(half_d, ir.HalfType()), ir.FloatType())
        dot4 = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I32x16, [_I32x16] * 3), "llvm.x86.avx512.vpdpbusd.512"
        )
        ones = ir.Constant(_I32x16, [0x01010101] * LANES)  # four unsigned 1s per lane
        total = None
        for half in range(2):  # 64 weights each
            bits_at = builder.gep(block, [ir.Constant(ir.IntType(64), 2 + 8 * half)])
            bits = builder.load(builder.bitcast(bits_at, ir.IntType(64).as_pointer()), align=1)
            at = _offset(builder, x_at, 64 * half)
            x = builder.load(_element_pointer(context, builder, xq_t, xq, at, _I8x64), align=1)
            neg_x = builder.load(_element_pointer(context, builder, neg_t, neg_xq, at, _I8x64), align=1)
            signed = builder.select(builder.bitcast(bits, _MASK64), x, neg_x)
            sums = builder.sitofp(builder.call(dot4, [ir.Constant(_I32x16, None), ones, builder.bitcast(signed, _I32x16)]), _F32x16)
            scales_ptr = _element_pointer(context, builder, scales_t, lane_scales, _offset(builder, scale_at, LANES * half), _F32x16)
            part = builder.fmul(sums, builder.load(scales_ptr, align=4), flags=["contract"])
            total = part if total is None else builder.fadd(total, part, flags=["contract"])
        splat_d = builder.shuffle_vector(
            builder.insert_element(ir.Constant(_F32x16, None), d, ir.Constant(ir.IntType(32), 0)),
            ir.Constant(_F32x16, None), ir.Constant(_I32x16, [0] * LANES),
        )
        acc_ptr = _element_pointer(context, builder, acc_t, acc, acc_at, _F32x16)
        updated = builder.fadd(builder.load(acc_ptr, align=4), builder.fmul(total, splat_d, flags=["contract"]), flags=["contract"])
        builder.store(updated, acc_ptr, align=4)
        return context.get_dummy_value()

    return signature, codegen
