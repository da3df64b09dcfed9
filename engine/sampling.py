"""Sampling: parameters, the tutorial's presets, and the sampler as a chain of small steps.

Each step takes the candidates, best first, and keeps a (possibly shorter) best-first prefix, in the
order of llama.cpp's default chain (common/common.h, common_params_sampling::samplers):
penalties -> top-k -> top-p -> min-p -> temperature -> draw. Top-p and min-p therefore judge the
model's own distribution, and temperature only reshapes what they kept, so a preset means the same
here as in llama.cpp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engine import kernels


@dataclass
class SamplingParams:
    temperature: float = 0.5
    top_k: int = 20
    top_p: float = 0.85
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_window: int = 64
    seed: int | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        checks = [
            ("temperature", 0.0 <= self.temperature <= 5.0, "between 0 and 5"),
            ("top_k", 0 <= self.top_k <= 100_000, "0 (off) or a positive count"),
            ("top_p", 0.0 < self.top_p <= 1.0, "in (0, 1]"),
            ("min_p", 0.0 <= self.min_p < 1.0, "in [0, 1)"),
            ("repeat_penalty", 0.0 < self.repeat_penalty <= 5.0, "in (0, 5]"),
            ("presence_penalty", -2.0 <= self.presence_penalty <= 2.0, "between -2 and 2"),
            ("frequency_penalty", -2.0 <= self.frequency_penalty <= 2.0, "between -2 and 2"),
            ("penalty_window", 0 <= self.penalty_window <= 100_000, "0 or more tokens"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected} (got {getattr(self, name)})")

    def with_changes(self, **changes: Any) -> "SamplingParams":
        return replace(self, **changes)


# The four presets of the Bonsai tutorial (temperature, top-k, top-p).
PRESETS: dict[str, SamplingParams] = {
    "Precise": SamplingParams(temperature=0.1, top_k=10, top_p=0.70),
    "Balanced": SamplingParams(temperature=0.5, top_k=20, top_p=0.85),
    "Creative": SamplingParams(temperature=0.9, top_k=50, top_p=0.95),
    "High entropy": SamplingParams(temperature=1.2, top_k=100, top_p=0.98),
}
DEFAULT_PRESET = "Balanced"

_METADATA_KEYS = {
    "general.sampling.temp": ("temperature", float),
    "general.sampling.top_k": ("top_k", int),
    "general.sampling.top_p": ("top_p", float),
    "general.sampling.min_p": ("min_p", float),
    "general.sampling.penalty_repeat": ("repeat_penalty", float),
    "general.sampling.penalty_last_n": ("penalty_window", int),
    "general.sampling.penalty_present": ("presence_penalty", float),
    "general.sampling.penalty_freq": ("frequency_penalty", float),
}


def params_from_metadata(metadata: Mapping[str, Any]) -> SamplingParams:
    """The model's suggested defaults (`general.sampling.*`), on top of the Balanced preset."""
    changes = {
        field: cast(metadata[key]) for key, (field, cast) in _METADATA_KEYS.items() if key in metadata
    }
    return PRESETS[DEFAULT_PRESET].with_changes(**changes)


# ---- the chain -------------------------------------------------------------------------------


def apply_penalties(logits: np.ndarray, recent: np.ndarray, p: SamplingParams) -> np.ndarray:
    """Repetition (multiplicative, llama.cpp style), presence and frequency penalties, in place."""
    if len(recent) == 0 or (
        p.repeat_penalty == 1.0 and p.presence_penalty == 0.0 and p.frequency_penalty == 0.0
    ):
        return logits
    ids, counts = np.unique(recent, return_counts=True)
    seen = logits[ids]
    seen = np.where(seen > 0, seen / p.repeat_penalty, seen * p.repeat_penalty)
    logits[ids] = seen - counts * p.frequency_penalty - p.presence_penalty
    return logits


def top_k(ids: np.ndarray, logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k largest logits, sorted best first (k = 0 keeps all, still sorted)."""
    if 0 < k < len(logits):
        part = kernels.top_k_ids(logits, k)
        ids, logits = ids[part], logits[part]
    order = np.argsort(-logits, kind="stable")
    return ids[order], logits[order]


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = (logits - logits.max()) / temperature
    e = np.exp(z.astype(np.float64))
    return e / e.sum()


def top_p(ids: np.ndarray, probs: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Smallest best-first prefix whose mass reaches p (probs sorted descending)."""
    if p >= 1.0:
        return ids, probs
    keep = int(np.searchsorted(np.cumsum(probs), p)) + 1
    return ids[:keep], probs[:keep]


def min_p(ids: np.ndarray, probs: np.ndarray, m: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop candidates less likely than m times the best one."""
    if m <= 0.0:
        return ids, probs
    keep = probs >= m * probs[0]
    return ids[keep], probs[keep]


def sample(
    logits: np.ndarray, recent: np.ndarray, p: SamplingParams, rng: np.random.Generator
) -> int:
    """Pick the next token id from one row of logits."""
    logits = apply_penalties(logits.astype(np.float32, copy=True), recent, p)
    if p.temperature <= 0.0:
        return int(np.argmax(logits))
    ids, logits = top_k(np.arange(len(logits)), logits, p.top_k)
    ids, _ = min_p(*top_p(ids, softmax(logits, 1.0), p.top_p), p.min_p)
    probs = softmax(logits[: len(ids)], p.temperature)  # both steps kept a prefix of the sorted logits
    return int(rng.choice(ids, p=probs / probs.sum()))
