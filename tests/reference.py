"""An independent float64 NumPy forward pass of Qwen3, the yardstick for the Numba engine.

Written straight from the model's definition (and llama.cpp's YaRN), sharing no code with engine/:
the file is read with the gguf package's own GGUFReader, so a misreading in engine/gguf_file.py
cannot hide behind a reference that misreads the same way. Q1_0 and Q2_0 are expanded byte by byte
from tables of each byte's weights; plain matmuls, full causal attention.
"""

from __future__ import annotations

import math
from typing import Any

import gguf
import numpy as np

F32, F16, Q1_0, Q2_0 = 0, 1, 41, 42  # GGML type numbers
Q2_BLOCKS = {"g128": (128, 34), "g64": (64, 18)}  # PrismML's Q2_0 block, and mainline llama.cpp's

# every byte's weights over a unit scale: 8 signs (Q1_0, bit j = weight j) or 4 ternary values
# (Q2_0, bits 2s..2s+1 = code of weight s, value code - 1); a gather then one multiply per weight
Q1_BYTE_SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little") * 2.0 - 1.0
Q2_BYTE_VALUES = ((np.arange(256)[:, None] >> np.array([0, 2, 4, 6])) & 3) - 1.0


class Reader(gguf.GGUFReader):
    """gguf's reader, with each tensor's header entry kept raw: the package's type enum does not
    know Q2_0 (42) yet, so it is not asked to build typed tensors. The fields are its own."""

    def _build_tensors(self, start_offs: int, fields: list[gguf.ReaderField]) -> None:
        self.entries: dict[str, tuple[tuple[int, ...], int, int]] = {}  # name -> shape (rows first), type, offset
        for field in fields:
            _, name, _, dims, ggml_type, offset = field.parts
            shape = tuple(int(d) for d in reversed(dims.tolist()))
            self.entries[bytes(name).decode("utf-8")] = (shape, int(ggml_type[0]), int(start_offs + offset[0]))

    def metadata(self) -> dict[str, Any]:
        return {key: field.contents() for key, field in self.fields.items() if not key.startswith("GGUF.")}

    def q2_block(self) -> tuple[int, int]:
        """Weights and bytes per Q2_0 block: the layout whose size fills the room up to the next
        tensor (the writer pads to the alignment), judged on the file's largest Q2_0 tensor."""
        offsets = sorted(offset for _, _, offset in self.entries.values()) + [len(self.data)]
        shape, _, offset = max((e for e in self.entries.values() if e[1] == Q2_0), key=lambda e: math.prod(e[0]))
        room = offsets[offsets.index(offset) + 1] - offset
        fits = [(w, b) for w, b in Q2_BLOCKS.values() if math.prod(shape) // w * b <= room < math.prod(shape) // w * b + self.alignment]
        assert len(fits) == 1, f"Q2_0 tensor of {room} bytes fits {fits}"
        return fits[0]

    def weights(self, name: str) -> np.ndarray:
        shape, ggml_type, offset = self.entries[name]
        rows, cols = shape if len(shape) == 2 else (1, shape[0])
        if ggml_type in (F32, F16):
            dtype = np.float32 if ggml_type == F32 else np.float16
            return np.frombuffer(self.data, dtype, math.prod(shape), offset).astype(np.float64).reshape(shape)
        if ggml_type == Q1_0:
            (block, block_bytes), table = (128, 18), Q1_BYTE_SIGNS
        elif ggml_type == Q2_0:
            (block, block_bytes), table = self.q2_block(), Q2_BYTE_VALUES
        else:
            raise ValueError(f"{name}: GGML type {ggml_type} is not one the reference expands")
        raw = np.frombuffer(self.data, np.uint8, rows * cols // block * block_bytes, offset)
        blocks = raw.reshape(rows, cols // block, block_bytes)
        d = blocks[:, :, :2].copy().view("<f2").astype(np.float64)  # [rows, n_blocks, 1]
        codes = np.ascontiguousarray(blocks[:, :, 2:])  # (np.take is ~15x faster on contiguous bytes)
        weights = np.take(table, codes, axis=0).reshape(rows, cols // block, block)
        weights *= d
        return weights.reshape(shape)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def yarn_angles(meta: dict, head_dim: int, positions: np.ndarray) -> tuple[np.ndarray, float]:
    base = float(meta["qwen3.rope.freq_base"])
    inv = base ** (-np.arange(0, head_dim, 2) / head_dim)
    mscale = 1.0
    if meta.get("qwen3.rope.scaling.type") == "yarn":
        factor = float(meta["qwen3.rope.scaling.factor"])
        orig = float(meta["qwen3.rope.scaling.original_context_length"])
        dim = lambda beta: head_dim * math.log(orig / (beta * 2 * math.pi)) / (2 * math.log(base))  # noqa: E731
        low, high = max(0, math.floor(dim(32.0))), min(head_dim - 1, math.ceil(dim(1.0)))
        i = np.arange(head_dim // 2)
        keep_original = 1 - np.clip((i - low) / max(0.001, high - low), 0, 1)
        inv = inv / factor * (1 - keep_original) + inv * keep_original
        mscale = 1 + 0.1 * math.log(factor)
    return positions[:, None] * inv[None, :], mscale


def rope(x: np.ndarray, angles: np.ndarray, mscale: float) -> np.ndarray:
    """x [T, heads, head_dim]; NEOX: dim i pairs with dim i + head_dim/2."""
    half = x.shape[-1] // 2
    cos, sin = (np.cos(angles) * mscale)[:, None, :], (np.sin(angles) * mscale)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def forward(path: str, ids: list[int], kv_dtype: type = np.float64) -> np.ndarray:
    """Logits [len(ids), n_vocab] in float64; keys and values rounded to kv_dtype (the cache's
    storage type) before attention, all else float64."""
    g = Reader(path)
    meta = g.metadata()
    n_head, n_kv = meta["qwen3.attention.head_count"], meta["qwen3.attention.head_count_kv"]
    head_dim = meta["qwen3.attention.key_length"]
    eps = meta["qwen3.attention.layer_norm_rms_epsilon"]
    W = g.weights
    T = len(ids)
    x = W("token_embd.weight")[ids]
    angles, mscale = yarn_angles(meta, head_dim, np.arange(T, dtype=np.float64))
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for i in range(meta["qwen3.block_count"]):
        p = f"blk.{i}."
        h = rms_norm(x, W(p + "attn_norm.weight"), eps)
        q = (h @ W(p + "attn_q.weight").T).reshape(T, n_head, head_dim)
        k = (h @ W(p + "attn_k.weight").T).reshape(T, n_kv, head_dim)
        v = (h @ W(p + "attn_v.weight").T).reshape(T, n_kv, head_dim)
        q = rope(rms_norm(q, W(p + "attn_q_norm.weight"), eps), angles, mscale)
        k = rope(rms_norm(k, W(p + "attn_k_norm.weight"), eps), angles, mscale)
        k, v = k.astype(kv_dtype).astype(np.float64), v.astype(kv_dtype).astype(np.float64)
        k, v = np.repeat(k, n_head // n_kv, axis=1), np.repeat(v, n_head // n_kv, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / math.sqrt(head_dim) + mask
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = np.einsum("hts,shd->thd", probs, v).reshape(T, n_head * head_dim)
        x = x + attn @ W(p + "attn_output.weight").T
        m = rms_norm(x, W(p + "ffn_norm.weight"), eps)
        gate, up = m @ W(p + "ffn_gate.weight").T, m @ W(p + "ffn_up.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ W(p + "ffn_down.weight").T
    x = rms_norm(x, W("output_norm.weight"), eps)
    head = "output.weight" if "output.weight" in g.entries else "token_embd.weight"
    return x @ W(head).T
