"""Log-probabilities of generated tokens, as APIs report them (OpenAI's `logprobs`).

They describe the model's own distribution: log-softmax of the raw logits, before penalties,
temperature and truncation (llama-server's default), so they do not change with the sampling settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ALTERNATIVES = 20  # OpenAI's limit for top_logprobs


@dataclass(frozen=True)
class TokenLogprobs:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # the most likely (id, logprob) at this step, best first


def token_logprobs(logits: np.ndarray, token_id: int, alternatives: int) -> TokenLogprobs:
    """The chosen token's log-probability and the `alternatives` most likely tokens' (0..20)."""
    x = logits.astype(np.float64)
    peak = x.max()
    log_total = peak + np.log(np.exp(x - peak).sum())
    n = max(0, min(alternatives, MAX_ALTERNATIVES, len(x)))
    top: tuple[tuple[int, float], ...] = ()
    if n:
        best = np.argpartition(-x, n - 1)[:n]
        best = best[np.argsort(-x[best], kind="stable")]
        top = tuple((int(i), float(x[i] - log_total)) for i in best)
    return TokenLogprobs(int(token_id), float(x[token_id] - log_total), top)
