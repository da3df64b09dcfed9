"""Write random-weight Qwen3 GGUF files in Bonsai's exact layout, for tests and benchmarks.

The weights are noise, so the text is nonsense, but everything else is as in the real file: Q1_0
matrices, F32 norms, the same metadata keys (YaRN, sampling defaults), a byte-level BPE vocabulary
with Qwen3's special tokens at their real ids, and the Qwen3 chat template. The `bonsai-1.7b`
preset has Bonsai-1.7B's shapes and its exact byte size, so speed and memory can be measured
without the real download.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from engine.tokenizer import TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_USER_DEFINED, byte_decoder

BONSAI_1_7B_BYTES = 248_302_272
BONSAI_4B_BYTES = 572_270_624
BONSAI_8B_BYTES = 1_158_654_496
GGML_Q2_0 = 42  # not in the gguf package's enum yet: written by number
PADDING_KEY = "bonsai_tui.synth.padding"

# Qwen3's added tokens, in id order after the regular vocabulary (<|endoftext|> first)
QWEN3_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]


@dataclass(frozen=True)
class SynthSpec:
    n_layers: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_regular_tokens: int  # byte tokens + merged tokens; the special tokens come after
    context_length: int = 32768
    rope_base: float = 1_000_000.0
    rope_factor: float = 4.0  # YaRN; 1 = off
    rope_original_context: int = 8192
    weight_type: str = "Q1_0"  # for the matrices: Q1_0, Q2_0 (ternary), F16 or F32
    q2_layout: str = "g128"  # Q2_0 blocks: PrismML's 128 weights in 34 bytes, or mainline's 64 in 18
    tied: bool = True  # no output.weight: the LM head reuses token_embd
    target_bytes: int = 0  # pad the metadata so the file has exactly this size (0: no padding)


PRESETS: dict[str, SynthSpec] = {
    "tiny": SynthSpec(
        n_layers=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, head_dim=64,
        n_regular_tokens=1024, context_length=4096, rope_original_context=1024,
    ),
    "bonsai-1.7b": SynthSpec(
        n_layers=28, n_embd=2048, n_ff=6144, n_head=16, n_head_kv=8, head_dim=128,
        n_regular_tokens=151_643, target_bytes=BONSAI_1_7B_BYTES,
    ),
    "bonsai-4b": SynthSpec(
        n_layers=36, n_embd=2560, n_ff=9728, n_head=32, n_head_kv=8, head_dim=128,
        n_regular_tokens=151_643, target_bytes=BONSAI_4B_BYTES,
    ),
    "bonsai-8b": SynthSpec(
        n_layers=36, n_embd=4096, n_ff=12288, n_head=32, n_head_kv=8, head_dim=128,
        n_regular_tokens=151_643, context_length=65536, tied=False, target_bytes=BONSAI_8B_BYTES,
    ),
}
# Ternary-Bonsai: the same shapes with every matrix in Q2_0 (the hub's files are ~436 MiB, 1,020 MiB
# and 2.03 GiB; their exact sizes are not published, so no padding)
for _size in ("1.7b", "4b", "8b"):
    PRESETS[f"ternary-{_size}"] = replace(PRESETS[f"bonsai-{_size}"], weight_type="Q2_0", target_bytes=0)


def qwen3_chat_template() -> str:
    return resources.files("engine").joinpath("templates/qwen3.jinja").read_text(encoding="utf-8")


# ---- vocabulary ---------------------------------------------------------------------------


def _merged_tokens(count: int) -> Iterator[tuple[str, str]]:
    """(left, right) pairs whose concatenations are `count` new tokens, shortest first.

    Built from a small alphabet (space stand-in Ġ and lowercase letters), so common English words
    become few tokens, as with a real vocabulary.
    """
    alphabet = ["Ġ", *"etaoinshrdlcumwfgypbvkjxqz"]
    level = alphabet
    made = 0
    while True:
        next_level = []
        for left in level:
            for right in alphabet:
                if made == count:
                    return
                if right == "Ġ":  # a space only ever starts a token, as in GPT-2 vocabularies
                    continue
                yield left, right
                next_level.append(left + right)
                made += 1
        level = next_level


def synthetic_vocab(n_regular: int) -> tuple[list[str], list[str], list[int]]:
    """tokens, merges, token types: 256 byte tokens, merges up to n_regular, then the specials."""
    tokens = list(byte_decoder())
    merges = []
    for left, right in _merged_tokens(n_regular - len(tokens)):
        tokens.append(left + right)
        merges.append(f"{left} {right}")
    types = [TOKEN_NORMAL] * len(tokens)
    for special in QWEN3_SPECIAL_TOKENS:
        tokens.append(special)
        types.append(TOKEN_CONTROL if special.startswith("<|") else TOKEN_USER_DEFINED)
    return tokens, merges, types


# ---- weights ------------------------------------------------------------------------------


def random_q1(rng: np.random.Generator, rows: int, cols: int, scale: float) -> np.ndarray:
    """Random Q1_0 bytes, [rows, cols/128 * 18]: per block an fp16 scale then 16 random bit bytes."""
    n_blocks = cols // 128
    d = (rng.uniform(0.5, 1.5, size=(rows, n_blocks, 1)) * scale).astype("<f2")
    bits = rng.integers(0, 256, size=(rows, n_blocks, 16), dtype=np.uint8)
    return np.concatenate([d.view(np.uint8), bits], axis=2).reshape(rows, n_blocks * 18)


def random_q2(rng: np.random.Generator, rows: int, cols: int, scale: float, layout: str = "g128") -> np.ndarray:
    """Random ternary Q2_0 bytes: per 128 weights an fp16 scale and 32 bytes of codes 0/1/2
    (-d, 0, +d with odds 1:2:1). layout "g64" writes the same weights as two 64-weight blocks
    sharing the scale, so both layouts of one seed decode to identical matrices."""
    n_blocks = cols // 128
    d = (rng.uniform(0.5, 1.5, size=(rows, n_blocks, 1)) * scale).astype("<f2").view(np.uint8)
    codes = rng.integers(0, 256, size=(rows, n_blocks, 32), dtype=np.uint8)
    codes ^= ((codes & 0xAA) >> 1 & codes & 0x55) << 1  # code 3 -> 1: ternary files never hold 3
    if layout == "g128":
        return np.concatenate([d, codes], axis=2).reshape(rows, n_blocks * 34)
    halves = codes.reshape(rows, n_blocks, 2, 16)
    both = np.concatenate([np.broadcast_to(d[:, :, None, :], (rows, n_blocks, 2, 2)), halves], axis=3)
    return both.reshape(rows, n_blocks * 36)


def _add_matrix(
    writer: gguf.GGUFWriter, name: str, rng: np.random.Generator, rows: int, cols: int, kind: str, layout: str = "g128"
) -> None:
    scale = 1.0 / np.sqrt(cols)
    if kind == "Q1_0":
        data = random_q1(rng, rows, cols, scale)
        writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType.Q1_0)
    elif kind == "Q2_0":  # half the weights are zero: a larger scale keeps the same variance
        data = random_q2(rng, rows, cols, scale * np.sqrt(2.0), layout)
        writer.add_tensor(name, data.view(np.int8), raw_shape=(rows, cols), raw_dtype=GGML_Q2_0)  # int8: shape as given
    else:
        dtype = np.float16 if kind == "F16" else np.float32
        writer.add_tensor(name, (rng.standard_normal((rows, cols)) * scale).astype(dtype))


def _add_norm(writer: gguf.GGUFWriter, name: str, rng: np.random.Generator, size: int) -> None:
    writer.add_tensor(name, rng.normal(1.0, 0.1, size).astype(np.float32))


def _add_tensors(writer: gguf.GGUFWriter, spec: SynthSpec, n_vocab: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_q, n_kv = spec.n_head * spec.head_dim, spec.n_head_kv * spec.head_dim
    # the embedding rows are also the LM head when tied: unit scale gives logits of order 1
    _add_matrix(writer, "token_embd.weight", rng, n_vocab, spec.n_embd, spec.weight_type, spec.q2_layout)
    for i in range(spec.n_layers):
        blk = f"blk.{i}"
        _add_norm(writer, f"{blk}.attn_norm.weight", rng, spec.n_embd)
        _add_matrix(writer, f"{blk}.attn_q.weight", rng, n_q, spec.n_embd, spec.weight_type, spec.q2_layout)
        _add_matrix(writer, f"{blk}.attn_k.weight", rng, n_kv, spec.n_embd, spec.weight_type, spec.q2_layout)
        _add_matrix(writer, f"{blk}.attn_v.weight", rng, n_kv, spec.n_embd, spec.weight_type, spec.q2_layout)
        _add_norm(writer, f"{blk}.attn_q_norm.weight", rng, spec.head_dim)
        _add_norm(writer, f"{blk}.attn_k_norm.weight", rng, spec.head_dim)
        _add_matrix(writer, f"{blk}.attn_output.weight", rng, spec.n_embd, n_q, spec.weight_type, spec.q2_layout)
        _add_norm(writer, f"{blk}.ffn_norm.weight", rng, spec.n_embd)
        _add_matrix(writer, f"{blk}.ffn_gate.weight", rng, spec.n_ff, spec.n_embd, spec.weight_type, spec.q2_layout)
        _add_matrix(writer, f"{blk}.ffn_up.weight", rng, spec.n_ff, spec.n_embd, spec.weight_type, spec.q2_layout)
        _add_matrix(writer, f"{blk}.ffn_down.weight", rng, spec.n_embd, spec.n_ff, spec.weight_type, spec.q2_layout)
    _add_norm(writer, "output_norm.weight", rng, spec.n_embd)
    if not spec.tied:
        _add_matrix(writer, "output.weight", rng, n_vocab, spec.n_embd, spec.weight_type, spec.q2_layout)


# ---- metadata -----------------------------------------------------------------------------


def _metadata(spec: SynthSpec, name: str) -> dict[str, Any]:
    tokens, merges, types = synthetic_vocab(spec.n_regular_tokens)
    arch = "qwen3"
    meta: dict[str, Any] = {
        "general.type": "model",
        "general.name": name,
        "general.quantization_version": 2,
        "general.sampling.top_k": 20,
        "general.sampling.top_p": 0.85,
        "general.sampling.temp": 0.5,
        f"{arch}.block_count": spec.n_layers,
        f"{arch}.context_length": spec.context_length,
        f"{arch}.embedding_length": spec.n_embd,
        f"{arch}.feed_forward_length": spec.n_ff,
        f"{arch}.attention.head_count": spec.n_head,
        f"{arch}.attention.head_count_kv": spec.n_head_kv,
        f"{arch}.attention.key_length": spec.head_dim,
        f"{arch}.attention.value_length": spec.head_dim,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
        f"{arch}.rope.freq_base": spec.rope_base,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "qwen2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.eos_token_id": tokens.index("<|im_end|>"),
        "tokenizer.ggml.padding_token_id": tokens.index("<|endoftext|>"),
        "tokenizer.ggml.bos_token_id": tokens.index("<|endoftext|>"),
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": qwen3_chat_template(),
    }
    if spec.rope_factor > 1.0:
        meta[f"{arch}.rope.scaling.type"] = "yarn"
        meta[f"{arch}.rope.scaling.factor"] = spec.rope_factor
        meta[f"{arch}.rope.scaling.original_context_length"] = spec.rope_original_context
    return meta


_INT_KEYS_U32 = (".block_count", ".context_length", ".embedding_length", ".feed_forward_length",
                 ".head_count", ".head_count_kv", ".key_length", ".value_length", ".original_context_length",
                 "_token_id", "quantization_version", "sampling.top_k")


def _add_metadata(writer: gguf.GGUFWriter, meta: dict[str, Any]) -> None:
    for key, value in meta.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int) and key.endswith(_INT_KEYS_U32):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)


def _write(path: Path, spec: SynthSpec, meta: dict[str, Any], seed: int, tensors: bool) -> int:
    writer = gguf.GGUFWriter(path, "qwen3")
    _add_metadata(writer, {k: v for k, v in meta.items() if k != "general.architecture"})
    _add_tensors(writer, spec, len(meta["tokenizer.ggml.tokens"]), seed)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    if tensors:
        writer.write_tensors_to_file()
    else:
        writer.write_ti_data_to_file()
    size = writer.fout[0].tell()
    data_bytes = sum(gguf.GGUFWriter.ggml_pad(t.nbytes, writer.data_alignment) for t in writer.tensors[0].values())
    writer.close()
    return size if tensors else size + data_bytes


def write_model(path: str | Path, preset: str = "tiny", seed: int = 0, **overrides: Any) -> Path:
    """Write a random-weight model; `overrides` change fields of the preset's SynthSpec."""
    spec = replace(PRESETS[preset], **overrides)
    path = Path(path)
    meta = _metadata(spec, f"Synthetic {preset} (random weights)")
    if spec.target_bytes:
        meta[PADDING_KEY] = " "  # GGUFWriter skips empty strings; one space keeps the key counted
        natural = _write(path, spec, meta, seed, tensors=False)  # header only: measures the size
        if natural > spec.target_bytes:
            raise ValueError(f"a {preset} file needs {natural} bytes, more than the target {spec.target_bytes}")
        meta[PADDING_KEY] = " " * (1 + spec.target_bytes - natural)
    tmp = path.with_name(path.name + ".partial")
    _write(tmp, spec, meta, seed, tensors=True)
    os.replace(tmp, path)
    return path
