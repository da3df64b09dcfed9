"""The int8 KV cache's kernels: quantize on store, dequantize for prefill, and decode attention.

Layout of one (block of BLOCK positions, layer, KV head); head-major like the fp16 cache, and tiled
by 16 positions (T = position % 16 inside tile position // 16):
    keys    uint8  [tiles, head_dim/4 steps, 16 positions, 4 dims]     code + 128
    k_scale fp16   [tiles, head_dim/32 sub-blocks, 16 positions]       (as uint16 bits)
    values  int8   [tiles, 8 position pairs, head_dim, 2 positions]     code
    v_scale fp16   [tiles, head_dim/32 sub-blocks, 16 positions]
A key or value is code * scale with one scale per 32 dims of a position and head (q8_0's blocks):
scale = max |x| / 127 over those 32 dims (rounded to fp16), code = round(x / scale). 136 bytes a
row of 128 dims against fp16's 256.

Scores: the query is quantized the same way (per head and 32 dims), so
    q·k = sum over sub-blocks of q_scale * k_scale * (sum of (k code + 128) * q code - 128 * sum of q codes)
and one 64-byte key step holds 4 dims of 16 positions: vpdpbusd (unsigned x signed bytes, 4
products into each 32-bit lane) adds a step for 16 positions with the query's 4 codes broadcast,
no horizontal sum. Values: the softmax weights times the values' scales are quantized per tile,
head and sub-block to int16 (max 32767: relative error 1.5e-5 of the tile's largest), and
vpdpwssd adds two positions' code x weight products into each dim's lane.
Without AVX-512 VNNI, plain loops compute the same integers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from engine import simd
from engine.attention import exp_nonpositive, half_to_float
from engine.kv_q8_simd import CHUNK_SUBS, STEP, SUB, TILE, tile_pair_scores, tile_pair_values

VNNI = simd.KERNEL == "avx512"  # vpdpbusd / vpdpwssd on 512-bit vectors (AVX-512 VNNI, not capped below)
CHUNK = CHUNK_SUBS * SUB  # dims per VNNI call


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
    max |x| / 127, is rounded to fp16 before dividing (what the cache keeps)."""
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
    block = keys.shape[3] * TILE
    codes = np.empty(SUB, dtype=np.int32)
    for t in range(n):
        b, slot = divmod(start + t, block)
        tile, lane = divmod(slot, TILE)
        pair, which = divmod(lane, 2)
        for kv in range(n_kv):
            for sub in range(head_dim // SUB):
                k_scale[b, layer, kv, tile, sub, lane] = _quantize_slice(k[t, kv], sub * SUB, codes)
                for i in range(SUB):
                    dim = sub * SUB + i
                    keys[b, layer, kv, tile, dim // STEP, lane, dim % STEP] = np.uint8(codes[i] + 128)
                v_scale[b, layer, kv, tile, sub, lane] = _quantize_slice(v[t, kv], sub * SUB, codes)
                for i in range(SUB):
                    values[b, layer, kv, tile, pair, sub * SUB + i, which] = np.int8(codes[i])


@njit(cache=True, nogil=True)
def dequantize_rows(
    keys: np.ndarray, k_scale: np.ndarray, values: np.ndarray, v_scale: np.ndarray,
    layer: int, kv_first: int, kv_stop: int, start: int, end: int, k_out: np.ndarray, v_out: np.ndarray,
) -> None:
    """k_out, v_out [end - start, kv_stop - kv_first, head_dim] = the float32 keys and values of KV
    heads kv_first..kv_stop at positions start..end."""
    block, head_dim = keys.shape[3] * TILE, values.shape[5]
    for pos in range(start, end):
        b, slot = divmod(pos, block)
        tile, lane = divmod(slot, TILE)
        pair, which = divmod(lane, 2)
        for kv in range(kv_first, kv_stop):
            for dim in range(head_dim):
                ks = half_to_float(k_scale[b, layer, kv, tile, dim // SUB, lane])
                code = np.int32(keys[b, layer, kv, tile, dim // STEP, lane, dim % STEP]) - 128
                k_out[pos - start, kv - kv_first, dim] = np.float32(code) * ks
                vs = half_to_float(v_scale[b, layer, kv, tile, dim // SUB, lane])
                v_out[pos - start, kv - kv_first, dim] = np.float32(values[b, layer, kv, tile, pair, dim, which]) * vs


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


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _quantize_weights(
    weights: np.ndarray, at: int, v_scale: np.ndarray, vs_at: int, n_subs: int, out: np.ndarray, out_scales: np.ndarray,
    scaled: np.ndarray,
) -> None:
    """out[16 * sub + lane] = int16 codes of weights[at + lane] * the value's scale (v_scale[vs_at +
    16 * sub + lane]), out_scales[sub] their scale (largest / 32767) per sub-block. scaled: 16 floats of room."""
    for sub in range(n_subs):
        largest = np.float32(0.0)
        for lane in range(TILE):
            x = weights[at + lane] * half_to_float(v_scale[vs_at + sub * TILE + lane])
            scaled[lane] = x
            largest = max(largest, x)
        scale = largest / np.float32(32767.0)
        inverse = np.float32(1.0) / scale if scale > 0 else np.float32(0.0)
        for lane in range(TILE):
            out[sub * TILE + lane] = np.int16(scaled[lane] * inverse + np.float32(0.5))  # >= 0: to nearest
        out_scales[sub] = scale


# ---- the same integers in plain loops (every CPU) -----------------------------------------------


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _tile_scores_loop(scores, s_at, keys, k_at, k_scale, ks_at, codes, c_at, scales, corrections, q_at, n_subs, sums):
    """tile_pair_scores for one head over n_subs sub-blocks (sums: 16 int32 of room)."""
    for sub in range(n_subs):
        sums[:] = 0
        for step in range(sub * (SUB // STEP), (sub + 1) * (SUB // STEP)):
            for j in range(STEP):
                x = np.int32(codes[c_at + step * STEP + j])
                base = k_at + step * STEP * TILE + j
                for lane in range(TILE):
                    sums[lane] += np.int32(keys[base + lane * STEP]) * x
        for lane in range(TILE):
            k_scale_value = half_to_float(k_scale[ks_at + sub * TILE + lane])
            scores[s_at + lane] += np.float32(sums[lane] - corrections[q_at + sub]) * (k_scale_value * scales[q_at + sub])


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _tile_values_loop(acc, acc_at, values, v_at, pair_stride, weights, w_at, w_scales, ws_at, n_subs, sums):
    """tile_pair_values for one head over n_subs sub-blocks (sums: 32 int32 of room)."""
    for sub in range(n_subs):
        sums[:] = 0
        for lane in range(TILE):
            w = np.int32(weights[w_at + sub * TILE + lane])
            base = v_at + (lane // 2) * pair_stride + sub * SUB * 2 + lane % 2
            for i in range(SUB):
                sums[i] += np.int32(values[base + 2 * i]) * w
        for i in range(SUB):
            acc[acc_at + sub * SUB + i] += np.float32(sums[i]) * w_scales[ws_at + sub]


# ---- decode attention ---------------------------------------------------------------------------


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _softmax_in_place(row: np.ndarray, n: int) -> None:
    """Softmax of row[:n]; row[n:] (the last tile's unused lanes) becomes 0."""
    best = row[:n].max()
    total = np.float32(0.0)
    for p in range(n):
        e = exp_nonpositive(row[p] - best)
        row[p] = e
        total += e
    inverse = np.float32(1.0) / total
    for p in range(n):
        row[p] *= inverse
    row[n:] = 0.0


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def attend_one_token(
    q: np.ndarray, keys: np.ndarray, k_scale: np.ndarray, values: np.ndarray, v_scale: np.ndarray,
    layer: int, n_keys: int, out: np.ndarray,
) -> None:
    """Grouped-query attention of one query token over the first n_keys positions of `layer` in the
    int8 cache (the whole cache's arrays, as in the module docstring). q, out: [n_head, head_dim]
    float32. One job per KV head, as the fp16 kernel; its query heads go two at a time."""
    n_head, head_dim = q.shape
    n_kv, tiles_per_block = keys.shape[2], keys.shape[3]
    group = n_head // n_kv
    n_subs = head_dim // SUB
    codes = np.empty((n_head, head_dim), dtype=np.int8)
    q_scales = np.empty((n_head, n_subs), dtype=np.float32)
    corrections = np.empty((n_head, n_subs), dtype=np.int32)
    quantize_query(q, codes, q_scales, corrections)
    flat_codes, flat_scales, flat_corr = codes.ravel(), q_scales.ravel(), corrections.ravel()
    n_tiles = (n_keys + TILE - 1) // TILE
    padded = n_tiles * TILE
    tile_bytes = TILE * head_dim
    vector_pairs = group // 2 if VNNI and head_dim % CHUNK == 0 else 0  # pairs of heads for the VNNI steps
    for kv in prange(n_kv):
        first = kv * group
        scores = np.zeros((group, padded), dtype=np.float32)
        int_room, float_room = np.empty(SUB, dtype=np.int32), np.empty(TILE, dtype=np.float32)
        flat_scores = scores.ravel()
        for t in range(n_tiles):
            b, tile = divmod(t, tiles_per_block)
            if tile == 0:
                key_tiles, scale_tiles = keys[b, layer, kv].ravel(), k_scale[b, layer, kv].ravel()
            for pair in range(vector_pairs):
                g, h = 2 * pair, first + 2 * pair
                for c in range(0, n_subs, CHUNK_SUBS):
                    tile_pair_scores(
                        flat_scores, g * padded + t * TILE, (g + 1) * padded + t * TILE,
                        key_tiles, tile * tile_bytes + c * SUB * TILE, scale_tiles, (tile * n_subs + c) * TILE,
                        flat_codes, h * head_dim + c * SUB, (h + 1) * head_dim + c * SUB,
                        flat_scales, flat_corr, h * n_subs + c, (h + 1) * n_subs + c,
                    )
            for g in range(2 * vector_pairs, group):
                h = first + g
                _tile_scores_loop(
                    flat_scores, g * padded + t * TILE, key_tiles, tile * tile_bytes, scale_tiles,
                    tile * n_subs * TILE, flat_codes, h * head_dim, flat_scales, flat_corr, h * n_subs, n_subs, int_room,
                )
        for g in range(group):
            _softmax_in_place(scores[g], n_keys)
        acc = np.zeros((group, head_dim), dtype=np.float32)
        flat_acc = acc.ravel()
        weights = np.empty(n_subs * TILE, dtype=np.int16)  # one head's, for the loops
        w_scales = np.empty(n_subs, dtype=np.float32)
        for t in range(n_tiles):
            b, tile = divmod(t, tiles_per_block)
            if tile == 0:
                value_tiles, scale_tiles = values[b, layer, kv].ravel(), v_scale[b, layer, kv].ravel()
            for pair in range(vector_pairs):
                g = 2 * pair
                for c in range(0, n_subs, CHUNK_SUBS):
                    tile_pair_values(
                        flat_acc, g * head_dim + c * SUB, (g + 1) * head_dim + c * SUB,
                        value_tiles, tile * tile_bytes + c * SUB * 2, 2 * head_dim, scale_tiles, (tile * n_subs + c) * TILE,
                        flat_scores, g * padded + t * TILE, (g + 1) * padded + t * TILE,
                    )
            for g in range(2 * vector_pairs, group):
                _quantize_weights(flat_scores, g * padded + t * TILE, scale_tiles, tile * n_subs * TILE, n_subs, weights, w_scales, float_room)
                _tile_values_loop(
                    flat_acc, g * head_dim, value_tiles, tile * tile_bytes, 2 * head_dim, weights, 0, w_scales, 0, n_subs, int_room,
                )
        for g in range(group):
            for i in range(head_dim):
                out[first + g, i] = acc[g, i]
