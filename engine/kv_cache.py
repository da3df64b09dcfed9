"""The KV cache: the keys and values of every position a conversation has seen, in fp16.

Decode attention reads all of them for every new token, so their size is its speed: fp16 halves
the float32 stream (Bonsai-1.7B at 4,096 positions: 470 MB instead of 940) at a rounding of
~5e-4 relative, as llama.cpp's default cache type.

Layout: [block, layer, kv head, position in block, head_dim], BLOCK positions per block.
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

BLOCK = 256  # positions per block: 29 MB of K+V per block for Bonsai-1.7B


class KVCache:
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
    def for_config(cls, config, n_ctx: int) -> KVCache:
        return cls(config.n_layers, n_ctx, config.n_head_kv, config.head_dim)

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
