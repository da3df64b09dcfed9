"""The int8 KV cache (kv_cache="q8"): storage, decode attention on every instruction-set path, the
model and the session over it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import engine
import kv_q8_twins
from conftest import run_on_capped_path
from engine import attention_q8, simd
from engine.kv_cache import BLOCK, KVCache, Q8KVCache
from engine.session import ChatSession
from engine.sampling import SamplingParams

PATHS_BELOW = {"avx512": ["avx2", "generic"], "avx2": ["generic"], "generic": []}[simd.KERNEL]


def test_decode_attention_matches_the_float64_twin_on_this_path() -> None:
    assert kv_q8_twins.run() == len(kv_q8_twins.SHAPES) * len(kv_q8_twins.N_KEYS)


@pytest.mark.parametrize("cap", PATHS_BELOW)
def test_decode_attention_matches_the_twin_on_each_capped_path(cap: str) -> None:
    assert run_on_capped_path(kv_q8_twins.__file__, cap) == f"loops | {len(kv_q8_twins.SHAPES) * len(kv_q8_twins.N_KEYS)} checks"


def test_the_vnni_steps_run_where_the_cpu_has_them() -> None:
    assert attention_q8.VNNI == (simd.KERNEL == "avx512")


def test_each_value_is_stored_to_the_nearest_step_of_its_32_dims_scale() -> None:
    cache, k, v = kv_q8_twins.random_cache(BLOCK + 40, 2, 128)
    keys, values = cache.read(1, 0, BLOCK + 40)
    for original, stored in ((k, keys), (v, values)):
        blocks = original.reshape(BLOCK + 40, 2, 4, 32)
        scales = (np.abs(blocks).max(-1) / 127).astype(np.float16).astype(np.float32)
        step = np.repeat(scales, 32, axis=-1).reshape(original.shape)
        assert np.all(np.abs(stored - original) <= step / 2 * 1.0001)
        # the codes are whole multiples of the fp16 scale
        codes = stored / np.where(step > 0, step, 1)
        np.testing.assert_allclose(codes, np.rint(codes), atol=1e-3)
    assert not cache.read(0, 0, BLOCK + 40)[0].any()  # other layers untouched
    assert cache.nbytes == 2 * 2 * (BLOCK + 40) * 2 * (128 + 8)
    assert Q8KVCache(28, 4096, 8, 128).nbytes * 2 < KVCache(28, 4096, 8, 128).nbytes * 1.1  # 136 of 256 bytes a row
    with pytest.raises(ValueError, match="do not fit a context of 296"):
        cache.store(0, BLOCK + 39, k[:2], v[:2])


def test_a_stored_span_across_blocks_reads_back_by_head() -> None:
    rng = np.random.default_rng(3)
    cache = Q8KVCache(1, 2 * BLOCK, 2, 64)
    k, v = rng.standard_normal((2, 20, 2, 64)).astype(np.float32)
    cache.store(0, BLOCK - 7, k, v)  # 7 positions in the first block, 13 in the second
    keys, values = cache.keys_and_values(0, 1, BLOCK + 13)
    np.testing.assert_array_equal(keys[BLOCK - 7 :], cache.read(0, BLOCK - 7, BLOCK + 13)[0][:, 1])
    np.testing.assert_allclose(values[BLOCK - 7 :], v[:, 1], atol=np.abs(v).max() / 254 * 1.0001)
    assert not keys[: BLOCK - 7].any()


def test_fp16_scales_round_to_nearest_like_numpy() -> None:
    xs = np.concatenate([
        np.float32(2.0) ** np.arange(-26, 16, dtype=np.float32),
        np.random.default_rng(4).random(5000, dtype=np.float32) * 3,
        np.random.default_rng(5).random(2000, dtype=np.float32) * 1e-4,  # subnormal fp16
        np.array([1 + 2**-11, 1 + 3 * 2**-11, 65504, 70000, 0], np.float32),  # ties to even, overflow
    ])
    got = np.array([attention_q8.half_bits(x) for x in xs], np.uint16)
    want = np.minimum(xs, 65504).astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got, want)


def test_an_unknown_cache_type_is_a_one_line_error(tiny_model_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown KV cache type 'q4': expected one of f16, q8"):
        engine.load(tiny_model_path, kv_cache="q4")


@pytest.fixture(scope="module")
def q8_model(tiny_model_path: Path):
    with engine.load(tiny_model_path, threads=2, exact=True, kv_cache="q8") as model:
        yield model


def test_decode_over_the_int8_cache_follows_the_fp16_cache(q8_model: engine.Model, exact_tiny_model: engine.Model) -> None:
    ids = [int(i) for i in np.random.default_rng(6).integers(5, 900, 300)]
    logits = {}
    for name, model in (("q8", q8_model), ("f16", exact_tiny_model)):
        cache = model.new_cache(len(ids))
        assert cache.kind == name
        model.forward(ids[:-40], cache, 0)  # prefill (dequantized slices and BLAS), then decode
        logits[name] = np.stack([model.forward([t], cache, pos) for pos, t in enumerate(ids[-40:], len(ids) - 40)])
    correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(logits["q8"], logits["f16"], strict=True)]
    assert min(correlation) > 0.999
    assert np.mean(logits["q8"].argmax(1) == logits["f16"].argmax(1)) >= 0.95


def test_the_second_turn_reuses_the_int8_cache_as_a_fresh_session_would(q8_model: engine.Model) -> None:
    greedy = SamplingParams(temperature=0.0)
    session = ChatSession(q8_model, n_ctx=512, params=greedy)
    turn1 = [{"role": "user", "content": "hello there"}]
    first = list(session.chat(turn1, max_tokens=8))[-1]
    turn2 = turn1 + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "and then?"}]
    second = list(session.chat(turn2, max_tokens=8))[-1]
    assert second.stats.cached_tokens == len(first.prompt_ids) + 8 - 1
    fresh = list(ChatSession(q8_model, n_ctx=512, params=greedy).generate(second.prompt_ids, max_tokens=8))[-1]
    assert second.token_ids == fresh.token_ids


def test_dropping_positions_of_an_int8_cache_moves_the_rest_down(q8_model: engine.Model) -> None:
    ids = [11, 500, 7, 960, 42, 3, 77, 18, 250, 9, 640, 31, 5, 820, 66, 2, 400, 13, 90, 700]
    cache, fresh = q8_model.new_cache(32), q8_model.new_cache(32)
    q8_model.forward(ids, cache, 0)
    assert q8_model.drop_positions(cache, 5, 10, len(ids)) == 15
    q8_model.forward(ids[:5] + ids[10:], fresh, 0)
    (k, v), (k_fresh, v_fresh) = cache.read(0, 0, 15), fresh.read(0, 0, 15)  # layer 0: the token alone decides
    np.testing.assert_array_equal(v, v_fresh)
    np.testing.assert_array_equal(k[:5], k_fresh[:5])
    np.testing.assert_allclose(k[5:], k_fresh[5:], rtol=0, atol=0.02 * np.abs(k_fresh).max())  # re-rounded once


def test_bench_measures_the_cache_type_it_is_given(tiny_model_path: Path, tiny_model: engine.Model) -> None:
    from test_cli import cli

    result = cli("bench", "--model", str(tiny_model_path), "-p", "8", "-n", "3", "--runs", "1", "--threads", "1",
                 "--depth", "40", "--ctx", "16", "--kv-cache", "q8", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    c = tiny_model.config  # 48 positions of int8 codes and one fp16 scale per 32 of them
    assert out["kv_cache"] == "q8" and out["kv_cache_mb"] * 2**20 == 2 * c.n_layers * 48 * c.n_head_kv * (c.head_dim + 4)
    bad = cli("bench", "--model", str(tiny_model_path), "--kv-cache", "q4")
    assert bad.returncode == 2 and bad.stderr.splitlines()[-1].endswith("argument --kv-cache: invalid choice: 'q4' (choose from 'f16', 'q8')")
