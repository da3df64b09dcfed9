"""The Bonsai family: the synth presets have the published shapes, and models with the 4B's and the
8B's full widths (2 layers, a small vocabulary) match the float64 reference, 1-bit and ternary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import engine
import reference
from engine import simd
from engine.synth import PRESETS, write_model

LOGIT_ATOL = 1e-3  # vs the float64 reference with K/V rounded to fp16, as test_forward
INT8_LOGIT_ATOL = 0.25
PROMPT_IDS = [11, 500, 7, 960, 42, 3]

# the model cards: layers, embd, ffn, query heads, KV heads, head_dim, context, tied
FAMILY = {
    "1.7b": (28, 2048, 6144, 16, 8, 128, 32768, True),
    "4b": (36, 2560, 9728, 32, 8, 128, 32768, True),
    "8b": (36, 4096, 12288, 32, 8, 128, 65536, False),
}


@pytest.mark.parametrize("size", list(FAMILY))
def test_presets_have_the_published_shapes(size: str) -> None:
    for preset, weights in ((f"bonsai-{size}", "Q1_0"), (f"ternary-{size}", "Q2_0")):
        s = PRESETS[preset]
        shape = (s.n_layers, s.n_embd, s.n_ff, s.n_head, s.n_head_kv, s.head_dim, s.context_length, s.tied)
        assert shape == FAMILY[size] and s.weight_type == weights and s.n_regular_tokens == 151_643
    assert PRESETS[f"bonsai-{size}"].target_bytes == {"1.7b": 248_302_272, "4b": 572_270_624, "8b": 1_158_654_496}[size]


SHAPED = {  # full widths, 2 layers, 1,050 tokens
    "4B-shaped Q1_0": ("bonsai-4b", {}),
    "8B-shaped Q1_0 (untied head)": ("bonsai-8b", {}),
    "4B-shaped ternary g128": ("ternary-4b", {"q2_layout": "g128"}),
    "8B-shaped ternary g64": ("ternary-8b", {"q2_layout": "g64"}),
}


@pytest.fixture(scope="module", params=list(SHAPED), ids=list(SHAPED))
def shaped_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    preset, overrides = SHAPED[request.param]
    path = tmp_path_factory.mktemp("family") / f"{preset}.gguf"
    return write_model(path, preset, seed=3, n_layers=2, n_regular_tokens=1024, target_bytes=0, **overrides)


def test_full_width_models_match_the_reference(shaped_path: Path) -> None:
    want = reference.forward(str(shaped_path), PROMPT_IDS, kv_dtype=np.float16)
    exact = engine.load(shaped_path, threads=2, exact=True)
    assert exact.config.n_embd in (2560, 4096) and exact.config.n_layers == 2
    assert np.abs(exact.logits(PROMPT_IDS) - want).max() < LOGIT_ATOL
    if simd.AVAILABLE:
        fast = engine.load(shaped_path, threads=2)
        cache = fast.new_cache(len(PROMPT_IDS))
        decoded = np.stack([fast.forward([t], cache, i) for i, t in enumerate(PROMPT_IDS)])
        assert np.abs(decoded - want).max() < INT8_LOGIT_ATOL
        np.testing.assert_array_equal(decoded.argmax(-1), want.argmax(-1))
