"""The JSON objects of OpenAI's API (chat.completion, its chunks, text_completion), built from
the engine's events, plus llama-server's `timings`."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from engine.session import GenerationStats, TokenEvent
from engine.tokenizer import BonsaiTokenizer


def usage(stats: GenerationStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
    }


def _per_token_ms(ms: float, n: int) -> float:
    return ms / n if n else 0.0


def timings(stats: GenerationStats) -> dict[str, Any]:
    """llama-server's figures: the prefill (the prompt tokens not already cached), then decode
    (every token after the first, which comes out of the prefill)."""
    prompt_ms = stats.prefill_s * 1000
    predicted_n = max(stats.generated_tokens - 1, 0)
    predicted_ms = stats.decode_s * 1000
    return {
        "cache_n": stats.cached_tokens,
        "prompt_n": stats.prefilled_tokens,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": _per_token_ms(prompt_ms, stats.prefilled_tokens),
        "prompt_per_second": stats.prefill_tok_s,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": _per_token_ms(predicted_ms, predicted_n),
        "predicted_per_second": stats.decode_tok_s,
    }


class Reply:
    """The parts every object of one response shares (id, created, model), and its builders."""

    def __init__(self, kind: str, model_id: str, tokenizer: BonsaiTokenizer) -> None:
        self.kind = kind  # "chat" or "text"
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.model_id = model_id
        self.tokenizer = tokenizer
        self.text_offset = 0  # /v1/completions logprobs: where each token starts in the reply

    def _envelope(self, chunk: bool) -> dict[str, Any]:
        kind = "chat.completion" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": kind + (".chunk" if chunk and self.kind == "chat" else ""),
                "created": self.created, "model": self.model_id}

    # ---- logprobs ----------------------------------------------------------------------

    def _piece(self, token_id: int) -> tuple[str, list[int]]:
        raw = self.tokenizer.token_bytes(token_id)
        return raw.decode("utf-8", errors="replace"), list(raw)

    def _chat_entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        text, raw = self._piece(token_id)
        return {"token": text, "logprob": logprob, "bytes": raw}

    def logprobs(self, tokens: Sequence[TokenEvent]) -> dict[str, Any] | None:
        scored = [t.logprobs for t in tokens if t.logprobs is not None]
        if not scored:
            return None
        if self.kind == "chat":
            return {"content": [
                {**self._chat_entry(lp.token_id, lp.logprob), "top_logprobs": [self._chat_entry(i, v) for i, v in lp.top]}
                for lp in scored
            ]}
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for lp in scored:
            text = self._piece(lp.token_id)[0]
            out["tokens"].append(text)
            out["token_logprobs"].append(lp.logprob)
            out["top_logprobs"].append({self._piece(i)[0]: v for i, v in lp.top})
            out["text_offset"].append(self.text_offset)
            self.text_offset += len(text)
        return out

    # ---- whole responses and stream chunks ----------------------------------------------

    def _choice(self, text: str | None, finish_reason: str | None, tokens: Sequence[TokenEvent], chunk: bool,
                role: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0}
        if self.kind == "chat":
            message: dict[str, Any] = {"role": "assistant"} if role or not chunk else {}
            if text is not None:
                message["content"] = text
            choice["delta" if chunk else "message"] = message
        else:
            choice["text"] = text or ""
        choice["logprobs"] = self.logprobs(tokens)
        choice["finish_reason"] = finish_reason
        return choice

    def complete(self, text: str, finish_reason: str, tokens: Sequence[TokenEvent], stats: GenerationStats) -> dict[str, Any]:
        return {**self._envelope(chunk=False), "choices": [self._choice(text, finish_reason, tokens, chunk=False)],
                "usage": usage(stats), "timings": timings(stats)}

    def first_chunk(self) -> dict[str, Any]:
        """Chat streams open with the role (and empty content), as OpenAI's do."""
        return {**self._envelope(chunk=True), "choices": [self._choice("", None, (), chunk=True, role=True)]}

    def chunk(self, text: str, tokens: Sequence[TokenEvent]) -> dict[str, Any]:
        return {**self._envelope(chunk=True), "choices": [self._choice(text, None, tokens, chunk=True)]}

    def last_chunk(self, finish_reason: str, stats: GenerationStats) -> dict[str, Any]:
        empty = None if self.kind == "chat" else ""
        return {**self._envelope(chunk=True), "choices": [self._choice(empty, finish_reason, (), chunk=True)],
                "timings": timings(stats)}

    def usage_chunk(self, stats: GenerationStats) -> dict[str, Any]:
        return {**self._envelope(chunk=True), "choices": [], "usage": usage(stats), "timings": timings(stats)}
