"""The sampler chain: each step's rule, presets, metadata defaults, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from engine import kernels
from engine.session import ChatSession
from engine.sampling import PRESETS, SamplingParams, apply_penalties, min_p, params_from_metadata, sample, top_k, top_p

LOGITS = np.array([1.0, 3.0, 2.0, 0.5, 2.5], dtype=np.float32)


def draw(params: SamplingParams, n: int = 300, recent=()) -> set[int]:
    rng = np.random.default_rng(0)
    return {sample(LOGITS, np.asarray(recent, np.int64), params, rng) for _ in range(n)}


def test_temperature_zero_is_greedy() -> None:
    assert draw(SamplingParams(temperature=0.0)) == {1}


def test_top_k_limits_candidates() -> None:
    assert draw(SamplingParams(temperature=5.0, top_k=2, top_p=1.0)) == {1, 4}
    ids, logits = top_k(np.arange(5), LOGITS.copy(), 3)
    assert ids.tolist() == [1, 4, 2] and logits.tolist() == [3.0, 2.5, 2.0]


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    ids, probs = top_p(np.arange(4), np.array([0.5, 0.3, 0.15, 0.05]), 0.79)
    assert ids.tolist() == [0, 1]
    ids, _ = top_p(np.arange(4), np.array([0.5, 0.3, 0.15, 0.05]), 0.81)
    assert ids.tolist() == [0, 1, 2]


def test_min_p_drops_unlikely_tokens() -> None:
    ids, _ = min_p(np.arange(4), np.array([0.5, 0.3, 0.15, 0.05]), 0.5)
    assert ids.tolist() == [0, 1]


def test_penalties_push_down_recent_tokens() -> None:
    out = apply_penalties(LOGITS.copy(), np.array([1, 1, 3]), SamplingParams(repeat_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.1))
    assert out[1] == pytest.approx(3.0 / 2 - 2 * 0.5 - 0.1)
    assert out[3] == pytest.approx(0.5 / 2 - 0.5 - 0.1)
    assert out[0] == 1.0
    assert draw(SamplingParams(temperature=0.0, repeat_penalty=3.0), recent=[1]) == {4}


def test_top_p_and_min_p_judge_the_distribution_before_temperature() -> None:
    """llama.cpp's order: at temperature 5 the scaled distribution is nearly flat (top-p 0.6 would
    keep three tokens, min-p 0.5 all five); the model's own keeps tokens 1 and 4 only."""
    assert draw(SamplingParams(temperature=5.0, top_k=0, top_p=0.6)) == {1, 4}
    assert draw(SamplingParams(temperature=5.0, top_k=0, top_p=1.0, min_p=0.5)) == {1, 4}


def test_temperature_still_reshapes_what_is_kept() -> None:
    rng = np.random.default_rng(0)
    p_hot, p_cold = (SamplingParams(temperature=t, top_k=0, top_p=1.0) for t in (5.0, 0.2))
    hot = [sample(LOGITS, np.empty(0, np.int64), p_hot, rng) for _ in range(400)]
    cold = [sample(LOGITS, np.empty(0, np.int64), p_cold, rng) for _ in range(400)]
    assert set(hot) == {0, 1, 2, 3, 4} and hot.count(1) < 160  # p(1) = 0.25 at temperature 5
    assert cold.count(1) > 340  # 0.92 at temperature 0.2


def session_reply(model, params: SamplingParams, session: ChatSession | None = None) -> list[int]:
    session = session or ChatSession(model, n_ctx=128, params=params)
    return list(session.chat([{"role": "user", "content": "tell me a story"}], max_tokens=16))[-1].token_ids


def test_a_seed_makes_the_engines_replies_reproducible(exact_tiny_model) -> None:
    """The session seeds its sampler from params.seed for every reply (the app's regenerate picks a
    new seed; the API's `seed` field sets one). The float32 decode, because a reused cache computes
    the last prompt token's logits by another path, and int8 rounding would move them a little."""
    tiny_model = exact_tiny_model
    params = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, seed=7)
    first = session_reply(tiny_model, params)
    assert session_reply(tiny_model, params) == first  # a new session
    session = ChatSession(tiny_model, n_ctx=128, params=params)
    assert session_reply(tiny_model, params, session) == first
    assert session_reply(tiny_model, params, session) == first  # the same session, its cache reused
    assert session_reply(tiny_model, params.with_changes(seed=8)) != first


def test_presets_are_the_tutorials() -> None:
    table = {name: (p.temperature, p.top_k, p.top_p) for name, p in PRESETS.items()}
    assert table == {
        "Precise": (0.1, 10, 0.70),
        "Balanced": (0.5, 20, 0.85),
        "Creative": (0.9, 50, 0.95),
        "High entropy": (1.2, 100, 0.98),
    }


def test_metadata_defaults_override_balanced() -> None:
    p = params_from_metadata({"general.sampling.top_k": 40, "general.sampling.temp": 0.7})
    assert (p.temperature, p.top_k, p.top_p) == (0.7, 40, 0.85)


@pytest.mark.parametrize("field, value", [("temperature", -1.0), ("top_p", 0.0), ("top_k", -3), ("min_p", 1.0)])
def test_validate_names_the_bad_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SamplingParams().with_changes(**{field: value}).validate()


def test_top_k_ids_finds_the_k_largest_values() -> None:
    rng = np.random.default_rng(3)
    for trial in range(100):
        values = rng.standard_normal(int(rng.integers(1, 2000))).astype(np.float32)
        if trial % 2:
            values = np.round(values, 1)  # many ties
        k = int(rng.integers(1, 60))
        found = kernels.top_k_ids(values, k)
        assert len(set(found.tolist())) == len(found) == min(k, len(values))
        np.testing.assert_array_equal(np.sort(values[found]), np.sort(values)[::-1][: len(found)][::-1])
    with_nan = np.array([0.5, np.nan, 2.0, -1.0], np.float32)
    assert sorted(kernels.top_k_ids(with_nan, 2).tolist()) == [0, 2]
