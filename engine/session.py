"""ChatSession: a conversation's KV cache kept across turns, and generation as a stream of events.

One turn: build the prompt's token ids -> keep the longest prefix already in the KV cache ->
prefill the rest (a stop is checked before every layer) -> decode token by token, sampling
each, until a stop token, the token budget, a cancel, or a full context.

The prompt of a turn that continues the conversation is the model's own context: the exact ids
of the previous prompt and of the reply it generated, then the new messages rendered by the
template (see `ChatSession.prompt_ids`). Rendering the whole conversation again would not give
those ids back: Qwen3's template drops a past reply's `<think>` block, and re-tokenizing a reply's
text need not give the ids that were sampled, so the cached prefix would end at the previous
assistant header and every turn would prefill the whole previous reply again.

Why the model's own ids, and not llama.cpp's other way (drop the think block's tokens from the
cache and shift the later keys' RoPE angles): the own ids are exactly what the model conditioned
its reply on, need no surgery on the cache, and work for any template and any tokenization. Their
difference from a fresh prefill of the canonical rendering (an empty `<think></think>` of four
tokens kept, the reply's sampled ids instead of its re-tokenized text) is measured by
benchmarks/multiturn.py: next-token logits against the canonical prompt, figures in
benchmarks/README.md. A context shift would not give the canonical logits either (the shifted keys
of later layers were computed attending to the dropped tokens) and would leave the
re-tokenization difference in place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
    ttft_s: float  # from the start of the prefill (the prompt already tokenized) to the first token

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


PREFILL_SLICE = 512  # prompt tokens per prefill step: what is done is kept when a stop comes
REPLY_SENTINEL = "\x00bonsai-reply\x00"  # stands for a reply's text when rendering what follows it


@dataclass(frozen=True)
class _Turn:
    """One generated reply and the exact ids the model saw: the continuation of a conversation
    that starts with `messages + [reply]` starts with `prompt_ids + reply_ids`."""

    messages: tuple[Message, ...]  # the prompt's messages
    enable_thinking: bool
    prompt_ids: tuple[int, ...]
    reply: Message  # {"role": "assistant", "content": the reply's text}
    reply_ids: tuple[int, ...]


def _starts_with(sequence: Sequence, prefix: Sequence) -> bool:
    return len(sequence) >= len(prefix) and list(sequence[: len(prefix)]) == list(prefix)


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
        self._turns: list[_Turn] = []  # the replies whose ids the cache holds, oldest first

    # ---- prompts ------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], enable_thinking: bool = False) -> list[int]:
        """The canonical prompt: the whole conversation rendered by the template, tokenized."""
        text = self.model.template.render(messages, add_generation_prompt=True, enable_thinking=enable_thinking)
        return self.model.tokenize(text)

    def prompt_ids(self, messages: Sequence[Message], enable_thinking: bool = False) -> list[int]:
        """The ids to send for `messages`: the model's own context where this session generated
        the earlier replies, else the canonical rendering.

        - `messages` extends a conversation this session answered (its prompt, then the reply's
          exact text, then new messages): that turn's prompt ids and reply ids, then the template's
          rendering of what follows the reply (its end-of-turn glue and the new messages).
        - `messages` is a prompt this session answered before (a regenerate): the same ids.
        - anything else (an edit further back, a reopened or trimmed conversation): `render`.
        """
        messages = [dict(m) for m in messages]
        for turn in reversed(self._turns):
            if turn.enable_thinking == enable_thinking and messages == list(turn.messages):
                return list(turn.prompt_ids)
            answered = [*turn.messages, turn.reply]
            if len(messages) > len(answered) and messages[: len(answered)] == answered:
                tail = self._text_after_reply(messages, len(answered) - 1, enable_thinking)
                if tail is not None:
                    return [*turn.prompt_ids, *turn.reply_ids, *self.model.tokenize(tail)]
        return self.render(messages, enable_thinking)

    def _text_after_reply(self, messages: list[Message], reply_index: int, enable_thinking: bool) -> str | None:
        """What the template renders after the reply at `reply_index`, or None if it does not
        render the reply's text once and verbatim (then the session falls back to `render`)."""
        marked = [*messages[:reply_index], {**messages[reply_index], "content": REPLY_SENTINEL}, *messages[reply_index + 1 :]]
        text = self.model.template.render(marked, add_generation_prompt=True, enable_thinking=enable_thinking)
        if text.count(REPLY_SENTINEL) != 1:
            return None
        return text.split(REPLY_SENTINEL)[1]

    def fit_messages(
        self, messages: Sequence[Message], reserve: int, enable_thinking: bool = False
    ) -> list[Message]:
        """Drop the oldest turns (never the system prompt nor the last message) until the prompt
        plus `reserve` new tokens fit. Raises ContextFullError if even that is not enough."""
        kept = list(messages)
        while True:
            needed = len(self.prompt_ids(kept, enable_thinking)) + reserve
            if needed <= self.n_ctx:
                return kept
            first = 1 if kept and kept[0]["role"] == "system" else 0
            if len(kept) - first <= 1:
                raise ContextFullError(needed, self.n_ctx)
            del kept[first]

    def cancel(self) -> None:
        """Stop the generation that was asked for last (by `chat` or `generate`): before its
        next token, or between two prefill slices. A cancel made after that call but before its
        first event still counts; one made when nothing was asked for is ignored by the next."""
        self._cancel.set()

    # ---- generation ---------------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[Message],
        max_tokens: int = 512,
        enable_thinking: bool = False,
        constraint: "Constraint | None" = None,
        *,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Generate the assistant's next reply to `messages`. Raises ContextFullError up front if
        the prompt leaves no room (use `fit_messages` to drop old turns). With a `constraint`
        (engine.constraints) the reply follows its grammar; a thinking block stays free.

        `stop`: the caller's own stop signal, checked like `cancel()`. A caller that starts the
        generation on another thread should make one per reply and set it, so a stop that comes
        before this call is not lost."""
        prompt = self.prompt_ids(messages, enable_thinking)
        if len(prompt) >= self.n_ctx:
            raise ContextFullError(len(prompt) + 1, self.n_ctx)
        if constraint is not None:
            constraint = constraint.with_thinking(enable_thinking)
        answered = (tuple(dict(m) for m in messages), enable_thinking)
        return self.generate(prompt, max_tokens, constraint, stop=stop, _answered=answered)

    def generate(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int = 512,
        constraint: "Constraint | None" = None,
        *,
        stop: threading.Event | None = None,
        _answered: tuple[tuple[Message, ...], bool] | None = None,
    ) -> Iterator[Event]:
        """Continue from raw token ids (no template), reusing the cached prefix."""
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("the prompt is empty")
        if len(prompt) >= self.n_ctx:
            raise ContextFullError(len(prompt) + 1, self.n_ctx)
        self._cancel.clear()  # a cancel from here on stops this generation
        stop_signals = [self._cancel] if stop is None else [self._cancel, stop]
        matcher = constraint.start() if constraint is not None else None  # compile errors raise here
        return self._generate(prompt, max_tokens, lambda: any(s.is_set() for s in stop_signals), _answered, matcher)

    @staticmethod
    def _recent(prompt: list[int], generated: list[int], window: int) -> np.ndarray:
        """The last `window` tokens of prompt + reply, which the repetition penalties look at."""
        if window <= 0:
            return np.empty(0, dtype=np.int64)
        tail = generated[-window:]
        if len(tail) < window:
            tail = prompt[max(0, len(prompt) - (window - len(tail))) :] + tail
        return np.asarray(tail, dtype=np.int64)

    def _prefill(self, prompt: list[int], start: int, stopped: Callable[[], bool]) -> np.ndarray | None:
        """Run prompt[start:] into the cache, slice by slice. The model checks `stopped` before
        each layer (a 512-token slice takes ~0.35 s a layer on 2 cores), so a stop lands within a
        layer while the prompt keeps the speed of long passes. Returns the last token's logits,
        or None if stopped; the slices done before the stop stay cached."""
        logits = None
        for pos in range(start, len(prompt), PREFILL_SLICE):
            piece = prompt[pos : pos + PREFILL_SLICE]
            logits = self.model.forward(piece, self.cache, pos, stopped=stopped)
            if logits is None:
                return None
            self.cached_ids = prompt[: pos + len(piece)]
        return logits

    def _remember(self, answered: tuple[tuple[Message, ...], bool], prompt: list[int], text: str, generated: list[int]) -> None:
        """Keep this reply's ids for the turns that continue it, and the earlier turns it continues."""
        messages, enable_thinking = answered
        self._turns = [t for t in self._turns if _starts_with(prompt, t.prompt_ids + t.reply_ids)]
        reply = {"role": "assistant", "content": text}
        self._turns.append(_Turn(messages, enable_thinking, tuple(prompt), reply, tuple(generated)))

    def _generate(
        self,
        prompt: list[int],
        max_tokens: int,
        stopped: Callable[[], bool],
        answered: tuple[tuple[Message, ...], bool] | None,
        matcher: "ConstraintMatcher | None" = None,
    ) -> Iterator[Event]:
        model = self.model
        start = time.perf_counter()
        # keep at least one prompt token to run, so there are fresh logits to sample from
        reused = min(common_prefix_length(self.cached_ids, prompt), len(prompt) - 1)
        self.cached_ids = prompt[:reused]
        logits = self._prefill(prompt, reused, stopped)
        prefill_s = time.perf_counter() - start

        rng = np.random.default_rng(self.params.seed)
        decoder = model.tokenizer.stream_decoder()
        generated: list[int] = []
        pieces: list[str] = []
        ttft = 0.0
        decode_start = time.perf_counter()
        reason = StopReason.MAX_TOKENS
        while len(generated) < max_tokens:
            if logits is None or stopped():
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
            if stopped():
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
        text = "".join(pieces)
        if answered is not None and logits is not None:
            self._remember(answered, prompt, text, generated)
        incomplete = matcher is not None and not matcher.complete
        yield DoneEvent(reason, text, prompt, generated, stats, incomplete)
