"""The Numba engine against the float64 reference, on tiny models of several shapes and types."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import engine
import reference
from engine import kernels, simd
from engine.matrix import GEMV_MAX_ROWS, Q1Matrix
from engine.synth import random_q1, write_model

# float32 engine vs float64 reference, tiny models with logits of order 1-5
LOGIT_ATOL = 2e-4
# the same with the reference's K/V rounded to fp16 as the cache stores them: a float32 and a
# float64 key can straddle a rounding midpoint and land one fp16 step apart (measured: 2.2e-4 to
# 4.5e-4 over the variants)
ROUNDED_KV_LOGIT_ATOL = 1e-3
# against the unrounded reference: what the fp16 cache itself costs (measured: 2.1e-3 to 3.6e-3)
FP16_KV_LOGIT_ATOL = 1e-2
# two float32 orders of the same sums (batch vs row by row), each key then rounded to fp16
ORDER_ATOL = 5e-4
# int8 decode (activations rounded per 32-block, as llama.cpp's Q8_0) vs the same reference:
# measured on the tiny model, 0.12 at most over 73 decode steps, argmax agreeing on 72.
INT8_LOGIT_ATOL = 0.25
INT8_ARGMAX_AGREEMENT = 0.95
needs_int8 = pytest.mark.skipif(not simd.AVAILABLE, reason="int8 decode kernel needs AVX-512 BW + VNNI")

PROMPT = (  # longer than GEMV_MAX_ROWS tokens, so a whole-prompt pass takes the exact path's unpack + BLAS
    "<|im_start|>user\nhello there, how are you today? tell me about the trees and the sea "
    "and the rocks where the old bonsai grows<|im_end|>\n<|im_start|>assistant\n"
)


def q1_row(scale: float, signs: np.ndarray) -> np.ndarray:
    """One Q1_0 row built by hand from +1/-1 signs (LSB-first bits)."""
    blocks = []
    for block in signs.reshape(-1, 128):
        bits = np.packbits(block > 0, bitorder="little")
        blocks.append(np.concatenate([np.array([scale], "<f2").view(np.uint8), bits]))
    return np.concatenate(blocks)[None, :]


def test_q1_layout_matches_the_spec() -> None:
    signs = np.where(np.arange(256) % 3 == 0, 1.0, -1.0)
    row = q1_row(0.5, signs)
    out = np.empty((1, 256), np.float32)
    kernels.q1_dequantize(kernels.q1_tiles(row), 0, 1, out)
    np.testing.assert_array_equal(out[0], 0.5 * signs)
    # weight 0 is bit 0 of the first bit byte: flip it alone
    row[0, 2] ^= 1
    kernels.q1_dequantize(kernels.q1_tiles(row), 0, 1, out)
    assert out[0, 0] == -0.5 and out[0, 3] == 0.5


@pytest.mark.parametrize("half", [0x3C00, 0xC000, 0x0001, 0x3555, 0x7BFF])
def test_fp16_scale_decoding(half: int) -> None:
    expected = np.array([half], np.uint16).view(np.float16)[0]
    assert kernels.fp16_to_float(np.uint8(half & 0xFF), np.uint8(half >> 8)) == float(expected)


def test_lut_gemv_and_tiled_gemm_match_dense_float64() -> None:
    rng = np.random.default_rng(1)
    data = random_q1(rng, 300, 512, 0.05)  # 300 rows: four full row tiles and a padded one
    dense = reference_dense(data, 512)
    matrix = Q1Matrix(data, 512, ThreadPoolExecutor(2))
    x = rng.standard_normal((GEMV_MAX_ROWS + 6, 512)).astype(np.float32)
    expected = x.astype(np.float64) @ dense.T
    np.testing.assert_allclose(matrix.matmul(x[:1]), expected[:1], atol=1e-4)  # GEMV path
    np.testing.assert_allclose(matrix.matmul(x), expected, atol=1e-4)  # dequantize + BLAS path


def reference_dense(data: np.ndarray, cols: int) -> np.ndarray:
    blocks = data.reshape(data.shape[0], cols // 128, 18)
    d = blocks[:, :, :2].copy().view("<f2").astype(np.float64)
    bits = np.unpackbits(blocks[:, :, 2:], axis=2, bitorder="little")
    return ((2.0 * bits - 1.0) * d).reshape(data.shape[0], cols)


VARIANTS = {
    "bonsai-like (Q1_0, tied, YaRN, GQA 2)": {},
    "F16, untied head, plain RoPE, no GQA": dict(weight_type="F16", tied=False, rope_factor=1.0, n_head_kv=4, rope_base=10000.0),
    "F32, one KV head, head_dim 128": dict(weight_type="F32", n_head=2, n_head_kv=1, head_dim=128),
    "Q1_0, untied, GQA 4, YaRN factor 8": dict(tied=False, n_head=8, n_head_kv=2, head_dim=32, rope_factor=8.0, n_layers=3),
}


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def variant_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return write_model(tmp_path_factory.mktemp("v") / "m.gguf", "tiny", seed=7, **VARIANTS[request.param])


def test_logits_match_float64_reference(variant_path) -> None:
    model = engine.load(variant_path, threads=2, exact=True)  # int8 paths: tests/test_kernels.py
    ids = model.tokenize(PROMPT)
    got = model.logits(ids)
    want = reference.forward(str(variant_path), ids, kv_dtype=np.float16)
    assert len(ids) > GEMV_MAX_ROWS
    assert got.shape == (len(ids), model.config.n_vocab) and got.dtype == np.float32
    assert np.abs(got - want).max() < ROUNDED_KV_LOGIT_ATOL
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    unrounded = reference.forward(str(variant_path), ids)
    assert np.abs(got - unrounded).max() < FP16_KV_LOGIT_ATOL


def test_config_comes_from_metadata(tiny_model: engine.Model) -> None:
    c = tiny_model.config
    assert (c.n_layers, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim) == (2, 256, 512, 4, 2, 64)
    assert c.uses_yarn and c.rope_factor == 4.0 and c.rope_original_context == 1024
    assert c.yarn_attn_factor == pytest.approx(1 + 0.1 * np.log(4.0))
    assert c.tied_embeddings and c.n_vocab == 1024 + 26


def test_prefill_then_decode_equals_one_pass(exact_tiny_model: engine.Model) -> None:
    tiny_model = exact_tiny_model
    ids = tiny_model.tokenize(PROMPT)
    full = tiny_model.logits(ids)
    cache = tiny_model.new_cache(128)
    batch = GEMV_MAX_ROWS + 1
    assert len(ids) > batch + 3
    chunked = [tiny_model.forward(ids[:batch], cache, 0, all_logits=True)]  # batch (GEMM) path
    chunked += [tiny_model.forward(ids[batch : batch + 3], cache, batch, all_logits=True)]  # a few rows: GEMV
    chunked += [tiny_model.forward([t], cache, batch + 3 + i, all_logits=True) for i, t in enumerate(ids[batch + 3 :])]
    np.testing.assert_allclose(np.concatenate(chunked), full, atol=ORDER_ATOL)


def test_a_long_prompt_goes_through_in_chunks(exact_tiny_model: engine.Model, monkeypatch) -> None:
    model = exact_tiny_model
    ids = model.tokenize(PROMPT)
    whole = model.logits(ids)
    monkeypatch.setattr(engine.model, "PREFILL_CHUNK", 7)
    assert len(ids) % 7
    np.testing.assert_allclose(model.logits(ids), whole, atol=ORDER_ATOL)
    np.testing.assert_allclose(model.forward(ids, model.new_cache(len(ids)), 0), whole[-1], atol=ORDER_ATOL)


def test_prefill_attention_in_row_slices_is_the_same(exact_tiny_model: engine.Model, monkeypatch) -> None:
    ids = exact_tiny_model.tokenize(PROMPT)
    whole = exact_tiny_model.logits(ids)
    monkeypatch.setattr(engine.model, "ATTENTION_ROWS", 5)
    np.testing.assert_allclose(exact_tiny_model.logits(ids), whole, atol=ORDER_ATOL)


@needs_int8
def test_int8_decode_stays_close_to_the_float64_reference(tiny_model: engine.Model, tiny_model_path) -> None:
    assert tiny_model.int8_decode
    ids = tiny_model.tokenize(PROMPT)
    cache = tiny_model.new_cache(128)
    decoded = np.stack([tiny_model.forward([t], cache, i) for i, t in enumerate(ids)])
    want = reference.forward(str(tiny_model_path), ids, kv_dtype=np.float16)
    error = np.abs(decoded - want).max()
    assert LOGIT_ATOL < error < INT8_LOGIT_ATOL  # rounded, but only by the activations' rounding
    assert (decoded.argmax(-1) == want.argmax(-1)).mean() >= INT8_ARGMAX_AGREEMENT


def test_yarn_ramp_keeps_fast_dims_and_interpolates_slow_ones() -> None:
    plain = kernels.rope_frequencies(128, 1e6)
    yarn = kernels.rope_frequencies(128, 1e6, factor=4.0, original_context=8192)
    assert yarn[0] == plain[0]  # short wavelengths untouched
    assert yarn[-1] == pytest.approx(plain[-1] / 4)  # long ones divided by the factor
    ratio = yarn / plain
    # llama.cpp's correction dims for base 1e6, 8192 original positions: pairs 17..34 ramp
    assert np.all(ratio[:18] == 1.0) and np.all(ratio[34:] == 0.25)
    assert np.all(np.diff(ratio) <= 0) and 0.25 < ratio[25] < 1.0


def test_the_reference_reads_the_file_without_the_engine() -> None:
    """reference.py reads with gguf.GGUFReader: a misreading in engine/gguf_file.py shows as a mismatch."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(reference))
    modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    modules += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert "gguf" in modules and not [m for m in modules if m and m.split(".")[0] == "engine"]


def test_the_engines_reader_agrees_with_the_gguf_package(tiny_model_path) -> None:
    from engine.gguf_file import GGUFFile

    theirs = reference.Reader(tiny_model_path)
    with GGUFFile(tiny_model_path) as ours:
        assert ours.metadata == theirs.metadata()
        assert {name: (info.shape, info.ggml_type, info.offset) for name, info in ours.tensors.items()} == theirs.entries
        np.testing.assert_array_equal(ours.tensor("output_norm.weight"), theirs.weights("output_norm.weight"))
