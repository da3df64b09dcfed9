"""ChatSession: a conversation's KV cache kept across turns, and generation as a stream of events.

One turn: render the whole conversation with the chat template -> tokenize -> keep the longest
prefix already in the KV cache -> prefill the rest in one batch -> decode token by token, sampling
each, until a stop token, the token budget, a cancel, or a full context.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Union

import numpy as np

from engine.errors import ContextFullError
from engine.logprobs import TokenLogprobs, token_logprobs
from engine.sampling import SamplingParams, sample

if TYPE_CHECKING:
    from engine.constraints import Constraint, ConstraintMatcher
    from engine.model import KVCache, Model

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


class StopReason(str, Enum):
    EOS = "eos"
    MAX_TOKENS = "max_tokens"
    CANCELLED = "cancelled"
    CONTEXT_FULL = "context_full"


@dataclass(frozen=True)
class TokenEvent:
    """One generated token. `text` may be empty while a multi-byte character is incomplete."""

    token_id: int
    text: str
    index: int  # 0-based position in the reply
    decode_tok_s: float  # running decode speed (0.0 for the first token)
    logprobs: TokenLogprobs | None = None  # when the session's `logprobs` asks for them


@dataclass(frozen=True)
class GenerationStats:
    prompt_tokens: int
    cached_tokens: int  # prompt tokens whose KV was reused from the previous turn
    generated_tokens: int
    prefill_s: float
    decode_s: float
    ttft_s: float  # from the call to the first token's text

    @property
    def prefilled_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens

    @property
    def prefill_tok_s(self) -> float:
        return self.prefilled_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        # the first token comes from the prefill, so decode speed counts the rest
        steps = self.generated_tokens - 1
        return steps / self.decode_s if steps > 0 and self.decode_s > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "generated_tokens": self.generated_tokens,
            "prefill_s": self.prefill_s,
            "decode_s": self.decode_s,
            "ttft_s": self.ttft_s,
            "prefill_tok_s": self.prefill_tok_s,
            "decode_tok_s": self.decode_tok_s,
        }


@dataclass(frozen=True)
class DoneEvent:
    stop_reason: StopReason
    text: str
    prompt_ids: list[int]
    token_ids: list[int]
    stats: GenerationStats
    # under a constraint: generation stopped before the grammar was complete (e.g. max_tokens),
    # so `text` is not a whole answer (truncated JSON)
    incomplete: bool = False


Event = Union[TokenEvent, DoneEvent]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class ChatSession:
    """Holds one conversation's KV cache. Use from one thread at a time; `cancel()` from any."""

    model: "Model"
    n_ctx: int = 0  # 0: min(model context, 4096)
    params: SamplingParams = field(default_factory=SamplingParams)
    cache: "KVCache" = field(init=False)
    cached_ids: list[int] = field(init=False, default_factory=list)
    logprobs: int | None = None  # None: no log-probabilities; n: each token's, with n alternatives

    def __post_init__(self) -> None:
        if self.n_ctx <= 0:
            self.n_ctx = min(self.model.config.context_length, 4096)
        self.n_ctx = min(self.n_ctx, self.model.config.context_length)
        self.cache = self.model.new_cache(self.n_ctx)
        self._cancel = threading.Event()

    # ---- prompts ------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], enable_thinking: bool = False) -> list[int]:
        text = self.model.template.render(messages, add_generation_prompt=True, enable_thinking=enable_thinking)
        return self.model.tokenize(text)

    def fit_messages(
        self, messages: Sequence[Message], reserve: int, enable_thinking: bool = False
    ) -> list[Message]:
        """Drop the oldest turns (never the system prompt nor the last message) until the prompt
        plus `reserve` new tokens fit. Raises ContextFullError if even that is not enough."""
        kept = list(messages)
        while True:
            needed = len(self.render(kept, enable_thinking)) + reserve
            if needed <= self.n_ctx:
                return kept
            first = 1 if kept and kept[0]["role"] == "system" else 0
            if len(kept) - first <= 1:
                raise ContextFullError(needed, self.n_ctx)
            del kept[first]

    def reset(self) -> None:
        self.cached_ids = []

    def cancel(self) -> None:
        """Ask the running generation to stop; it does so before the next token."""
        self._cancel.set()

    # ---- generation ---------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[Message],
        max_tokens: int = 512,
        enable_thinking: bool = False,
        constraint: "Constraint | None" = None,
    ) -> Iterator[Event]:
        """Generate the assistant's next reply to `messages`. Raises ContextFullError up front if
        the prompt leaves no room (use `fit_messages` to drop old turns). With a `constraint`
        (engine.constraints) the reply follows its grammar; a thinking block stays free."""
        prompt = self.render(messages, enable_thinking)
        if len(prompt) >= self.n_ctx:
            raise ContextFullError(len(prompt) + 1, self.n_ctx)
        if constraint is not None:
            constraint = constraint.with_thinking(enable_thinking)
        return self.generate(prompt, max_tokens, constraint)

    def generate(
        self, prompt_ids: Sequence[int], max_tokens: int = 512, constraint: "Constraint | None" = None
    ) -> Iterator[Event]:
        """Continue from raw token ids (no template), reusing the cached prefix."""
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("the prompt is empty")
        if len(prompt) >= self.n_ctx:
            raise ContextFullError(len(prompt) + 1, self.n_ctx)
        self._cancel.clear()
        matcher = constraint.start() if constraint is not None else None  # compile errors raise here
        return self._generate(prompt, max_tokens, matcher)

    @staticmethod
    def _recent(prompt: list[int], generated: list[int], window: int) -> np.ndarray:
        """The last `window` tokens of prompt + reply, which the repetition penalties look at."""
        if window <= 0:
            return np.empty(0, dtype=np.int64)
        tail = generated[-window:]
        if len(tail) < window:
            tail = prompt[max(0, len(prompt) - (window - len(tail))) :] + tail
        return np.asarray(tail, dtype=np.int64)

    def _generate(self, prompt: list[int], max_tokens: int, matcher: "ConstraintMatcher | None" = None) -> Iterator[Event]:
        model = self.model
        start = time.perf_counter()
        # keep at least one prompt token to run, so there are fresh logits to sample from
        reused = min(common_prefix_length(self.cached_ids, prompt), len(prompt) - 1)
        self.cached_ids = prompt[:reused]
        logits = model.forward(prompt[reused:], self.cache, reused)
        self.cached_ids = list(prompt)
        prefill_s = time.perf_counter() - start

        rng = np.random.default_rng(self.params.seed)
        decoder = model.tokenizer.stream_decoder()
        generated: list[int] = []
        pieces: list[str] = []
        ttft = 0.0
        decode_start = time.perf_counter()
        reason = StopReason.MAX_TOKENS
        while len(generated) < max_tokens:
            if self._cancel.is_set():
                reason = StopReason.CANCELLED
                break
            params = self.params  # re-read every token: the app may change it mid-reply
            if matcher is not None:
                logits = matcher.mask(logits)  # before penalties / top-k / top-p
            token = sample(logits, self._recent(prompt, generated, params.penalty_window), params, rng)
            if token in model.tokenizer.stop_ids:
                reason = StopReason.EOS
                break
            generated.append(token)
            logprobs = None if self.logprobs is None else token_logprobs(logits, token, self.logprobs)
            if matcher is not None:
                matcher.accept(token)
            text = decoder.push(token)
            pieces.append(text)
            now = time.perf_counter()
            if len(generated) == 1:
                ttft = now - start
                decode_start = now
            steps = len(generated) - 1
            speed = steps / (now - decode_start) if steps else 0.0
            yield TokenEvent(token, text, len(generated) - 1, speed, logprobs)
            if matcher is not None and matcher.finished:  # the grammar allows nothing more
                reason = StopReason.EOS
                break
            if len(generated) >= max_tokens:
                break
            if len(self.cached_ids) >= self.n_ctx:
                reason = StopReason.CONTEXT_FULL
                break
            if self._cancel.is_set():
                reason = StopReason.CANCELLED
                break
            logits = model.forward([token], self.cache, len(self.cached_ids))
            self.cached_ids.append(token)
        pieces.append(decoder.flush())
        decode_s = time.perf_counter() - decode_start if generated else 0.0
        stats = GenerationStats(
            prompt_tokens=len(prompt),
            cached_tokens=reused,
            generated_tokens=len(generated),
            prefill_s=prefill_s,
            decode_s=decode_s,
            ttft_s=ttft,
        )
        incomplete = matcher is not None and not matcher.complete
        yield DoneEvent(reason, "".join(pieces), prompt, generated, stats, incomplete)
