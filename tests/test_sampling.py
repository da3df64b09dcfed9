"""The sampler chain: each step's rule, presets, metadata defaults, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from engine import kernels
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


def test_seed_reproduces_the_same_draws() -> None:
    p = SamplingParams(temperature=1.5, top_k=0, top_p=1.0)
    a = [sample(LOGITS, np.empty(0, np.int64), p, np.random.default_rng(42)) for _ in range(20)]
    b = [sample(LOGITS, np.empty(0, np.int64), p, np.random.default_rng(42)) for _ in range(20)]
    assert a == b


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
