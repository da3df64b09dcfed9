"""The KV cache: the keys and values of every position a conversation has seen, in fp16 or int8.

Decode attention reads all of them for every new token, so their size is its speed: fp16 halves
the float32 stream (Bonsai-1.7B at 4,096 positions: 470 MB instead of 940) at a rounding of
~5e-4 relative, as llama.cpp's default cache type. Q8KVCache (kv_cache="q8") stores int8 codes
with an fp16 scale per 32 values (250 MB at 4,096 positions, rounding ~4e-3 of each 32's
largest); its layout and kernels are in attention_q8.py. KINDS names both, DEFAULT_KIND is the
one a Model uses unless told (see benchmarks/README.md, "Long chats", for why).

fp16 layout: [block, layer, kv head, position in block, head_dim], BLOCK positions per block.
- Inside a block, one head's positions are adjacent, so the kernel reads each head as a
  contiguous run (position-major rows interleaving the heads ran 3.5x slower: strided reads).
- Blocks outermost, and np.zeros maps pages lazily, so memory grows a block at a time with the
  positions actually cached, whatever n_ctx says (with transparent huge pages too).
The cache holds no count of its own: the session knows how many positions are valid. Dropping
a span (Model.drop_positions) reads the later positions back, re-rotates their keys and stores
them lower down.
"""

from __future__ import annotations

import numpy as np

from engine import attention, attention_q8

KINDS = ("f16", "q8")  # the `kv_cache` option's values: KVCache, Q8KVCache
DEFAULT_KIND = "f16"  # chosen by measurement: benchmarks/README.md, "Long chats"
BLOCK = 256  # positions per block: 29 MB of K+V per block for Bonsai-1.7B


class KVCache:
    kind = "f16"

    def __init__(self, n_layers: int, n_ctx: int, n_head_kv: int, head_dim: int) -> None:
        self.n_ctx = n_ctx
        self.n_layers, self.n_head_kv, self.head_dim = n_layers, n_head_kv, head_dim
        n_blocks = -(-n_ctx // BLOCK)
        shape = (n_blocks, n_layers, n_head_kv, BLOCK, head_dim)
        self.k = np.zeros(shape, dtype=np.float16)
        self.v = np.zeros(shape, dtype=np.float16)
        # the kernels read fp16 as its bits: Numba has no float16 type
        self.k_bits = self.k.view(np.uint16)
        self.v_bits = self.v.view(np.uint16)

    @classmethod
    def for_config(cls, config, n_ctx: int, kind: str = DEFAULT_KIND) -> KVCache:
        """The cache of type `kind` (KINDS) for a model of this config."""
        return cls.for_config_shape(config.n_layers, n_ctx, config.n_head_kv, config.head_dim, kind)

    @staticmethod
    def for_config_shape(n_layers: int, n_ctx: int, n_head_kv: int, head_dim: int, kind: str = DEFAULT_KIND) -> KVCache:
        if kind not in KINDS:
            raise ValueError(f"unknown KV cache type {kind!r}: expected one of {', '.join(KINDS)}")
        chosen = Q8KVCache if kind == "q8" else KVCache
        return chosen(n_layers, n_ctx, n_head_kv, head_dim)

    def attend_one_token(self, q: np.ndarray, layer: int, n_keys: int, out: np.ndarray) -> None:
        """Decode attention of q [n_head, head_dim] over positions 0..n_keys of `layer`, into out."""
        attention.attend_one_token(q, self.k_bits, self.v_bits, layer, n_keys, out)

    @property
    def nbytes(self) -> int:
        """Bytes reserved for n_ctx positions (pages are only resident once written)."""
        return 2 * self.n_layers * self.n_ctx * self.n_head_kv * self.head_dim * self.k.itemsize

    def store(self, layer: int, start: int, k: np.ndarray, v: np.ndarray) -> None:
        """Write keys and values [T, n_head_kv, head_dim] (float32) at positions start..start+T."""
        end = start + len(k)
        if end > self.n_ctx:
            raise ValueError(f"positions up to {end} do not fit a context of {self.n_ctx}")
        pos = start
        while pos < end:
            block, slot = divmod(pos, BLOCK)
            count = min(BLOCK - slot, end - pos)
            rows = slice(pos - start, pos - start + count)
            self.k[block, layer, :, slot : slot + count] = k[rows].transpose(1, 0, 2)
            self.v[block, layer, :, slot : slot + count] = v[rows].transpose(1, 0, 2)
            pos += count

    def read(self, layer: int, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values at positions start..end as float32 [T, n_head_kv, head_dim] (store's inverse)."""
        k = np.empty((end - start, self.n_head_kv, self.head_dim), dtype=np.float32)
        v = np.empty_like(k)
        pos = start
        while pos < end:
            block, slot = divmod(pos, BLOCK)
            count = min(BLOCK - slot, end - pos)
            rows = slice(pos - start, pos - start + count)
            k[rows] = self.k[block, layer, :, slot : slot + count].transpose(1, 0, 2)
            v[rows] = self.v[block, layer, :, slot : slot + count].transpose(1, 0, 2)
            pos += count
        return k, v

    def keys_and_values(self, layer: int, kv: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """keys() and values() together (the int8 cache converts both in one pass)."""
        return self.keys(layer, kv, end), self.values(layer, kv, end)

    def keys(self, layer: int, kv: int, end: int) -> np.ndarray:
        """Keys of KV head `kv` at positions 0..end as float32 [end, head_dim] (prefill reads these)."""
        return self._rows(self.k, layer, kv, end)

    def values(self, layer: int, kv: int, end: int) -> np.ndarray:
        return self._rows(self.v, layer, kv, end)

    def _rows(self, store: np.ndarray, layer: int, kv: int, end: int) -> np.ndarray:
        n_blocks = -(-end // BLOCK)
        out = np.empty((n_blocks, BLOCK, self.head_dim), dtype=np.float32)
        out[...] = store[:n_blocks, layer, kv]  # converted once, straight into the result
        return out.reshape(-1, self.head_dim)[:end]


class Q8KVCache(KVCache):
    """Keys and values as int8 codes with one fp16 scale per 32 dims of a position and head (q8_0's
    blocks): 136 bytes a row of 128 instead of fp16's 256. The layout and the decode kernel, which
    multiplies keys and an int8 query with integer dot products, are in attention_q8.py; prefill
    and drop_positions read float32 slices through dequantize_rows."""

    kind = "q8"

    def __init__(self, n_layers: int, n_ctx: int, n_head_kv: int, head_dim: int) -> None:
        if head_dim % attention_q8.SUB:
            raise ValueError(f"an int8 KV cache needs head_dim a multiple of {attention_q8.SUB}, not {head_dim}")
        self.n_ctx = n_ctx
        self.n_layers, self.n_head_kv, self.head_dim = n_layers, n_head_kv, head_dim
        lead = (-(-n_ctx // BLOCK), n_layers, n_head_kv)
        tiles, subs, tile = BLOCK // attention_q8.TILE, head_dim // attention_q8.SUB, attention_q8.TILE
        self.k = np.zeros((*lead, tiles, head_dim // attention_q8.STEP, tile, attention_q8.STEP), dtype=np.uint8)
        self.k_scale = np.zeros((*lead, tiles, subs, tile), dtype=np.uint16)  # fp16 bits
        self.v = np.zeros((*lead, tiles, tile // 2, head_dim, 2), dtype=np.int8)
        self.v_scale = np.zeros((*lead, tiles, subs, tile), dtype=np.uint16)

    @property
    def nbytes(self) -> int:
        row = self.head_dim + 2 * self.head_dim // attention_q8.SUB  # codes and fp16 scales
        return 2 * self.n_layers * self.n_ctx * self.n_head_kv * row

    def store(self, layer: int, start: int, k: np.ndarray, v: np.ndarray) -> None:
        end = start + len(k)
        if end > self.n_ctx:
            raise ValueError(f"positions up to {end} do not fit a context of {self.n_ctx}")
        k, v = np.ascontiguousarray(k, dtype=np.float32), np.ascontiguousarray(v, dtype=np.float32)
        attention_q8.store_rows(k, v, start, layer, self.k, self.k_scale, self.v, self.v_scale)

    def read(self, layer: int, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        return self._dequantized(layer, 0, self.n_head_kv, start, end)

    def keys(self, layer: int, kv: int, end: int) -> np.ndarray:
        return self._dequantized(layer, kv, kv + 1, 0, end)[0][:, 0]

    def values(self, layer: int, kv: int, end: int) -> np.ndarray:
        return self._dequantized(layer, kv, kv + 1, 0, end)[1][:, 0]

    def keys_and_values(self, layer: int, kv: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        k, v = self._dequantized(layer, kv, kv + 1, 0, end)
        return k[:, 0], v[:, 0]

    def _dequantized(self, layer: int, kv_first: int, kv_stop: int, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        k = np.empty((end - start, kv_stop - kv_first, self.head_dim), dtype=np.float32)
        v = np.empty_like(k)
        attention_q8.dequantize_rows(self.k, self.k_scale, self.v, self.v_scale, layer, kv_first, kv_stop, start, end, k, v)
        return k, v

    def attend_one_token(self, q: np.ndarray, layer: int, n_keys: int, out: np.ndarray) -> None:
        attention_q8.attend_one_token(q, self.k, self.k_scale, self.v, self.v_scale, layer, n_keys, out)
