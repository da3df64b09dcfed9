"""What the chat talks to: the local engine, or any OpenAI-compatible server (ours on a bigger
machine, llama-server, vLLM, LM Studio, Ollama...).

A remote endpoint looks to the chat like a ChatSession: `chat(messages, max_tokens, ...)` yields
the engine's own TokenEvent / DoneEvent, `params` is re-read for each reply, `cancel()` stops the
stream (closing the connection, which is how an OpenAI-compatible server learns to stop). Failures
are RemoteError, an EngineError: one line saying what went wrong and what to do.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx2

from bonsai_tui.widgets.status_bar import ModelSummary
from engine.errors import ContextFullError, EngineError
from engine.sampling import DEFAULT_PRESET, PRESETS, SamplingParams
from engine.session import ChatSession, DoneEvent, Event, GenerationStats, Message, StopReason, TokenEvent

if TYPE_CHECKING:
    from engine.model import Model

CONNECT_TIMEOUT_S = 10.0
STOP_POLL_S = 0.05  # how often a reply's stop event is looked at while the server is silent
READ_TIMEOUT_S = 600.0  # a big model on a slow server may think long before its first token
OPENAI_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")
# the llama.cpp extras each kind of server takes, and under which name; others are not sent
EXTRA_FIELDS = {
    "bonsai-tui": {"top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repeat_penalty"},
    "llamacpp": {"top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repeat_penalty"},
    "vllm": {"top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repetition_penalty"},
}
ALL_EXTRAS = ("top_k", "min_p", "repeat_penalty")


class RemoteError(EngineError):
    """The endpoint could not be used; the message says why and what to try."""


def api_base(url: str) -> str:
    """`http://host:8080`, `.../v1` or `.../v1/` -> `http://host:8080/v1`."""
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://", url):
        url = "http://" + url
    return url if url.endswith("/v1") else url + "/v1"


@dataclass
class Endpoint:
    """A server: where it is, its key, and the model to ask for (learned by `connect`)."""

    url: str
    api_key: str | None = None
    model_name: str | None = None
    n_ctx: int = 0  # 0: unknown (the server says when a prompt is too long)
    kind: str = "openai"  # bonsai-tui, llamacpp, vllm... from /v1/models' owned_by

    def __post_init__(self) -> None:
        self.url = api_base(self.url)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    @property
    def ignored_params(self) -> frozenset[str]:
        """Sampling settings this server is not sent (the panel marks them)."""
        return frozenset(name for name in ALL_EXTRAS if name not in EXTRA_FIELDS.get(self.kind, {}))

    def connect(self, client: httpx2.Client | None = None) -> "Endpoint":
        """Ask /v1/models: reachable, key accepted, which model. Raises RemoteError."""
        owned = client is None
        client = client or httpx2.Client(timeout=httpx2.Timeout(CONNECT_TIMEOUT_S))
        try:
            response = request(client, "GET", f"{self.url}/models", self)
            models = response.json().get("data") or []
        except (ValueError, AttributeError):
            raise RemoteError(f"{self.url} is not an OpenAI-compatible API (its /models is not a model list)") from None
        finally:
            if owned:
                client.close()
        if not models:
            raise RemoteError(f"{self.url} serves no model")
        ids = [m.get("id") for m in models]
        if self.model_name is None:
            chosen = models[0]
        elif self.model_name in ids:
            chosen = models[ids.index(self.model_name)]
        else:
            raise RemoteError(f"{self.url} has no model {self.model_name!r} (it has: {', '.join(map(str, ids))})")
        self.model_name = str(chosen.get("id"))
        self.kind = str(chosen.get("owned_by") or "openai")
        meta = chosen.get("meta") or {}
        self.n_ctx = int(meta.get("n_ctx") or meta.get("n_ctx_train") or chosen.get("max_model_len") or 0)
        return self

    def body(self, messages: Sequence[Message], params: SamplingParams, max_tokens: int, enable_thinking: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name, "messages": [dict(m) for m in messages], "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True},
        }
        for name in OPENAI_FIELDS:
            if getattr(params, name) is not None:
                body[name] = getattr(params, name)
        for name, remote_name in EXTRA_FIELDS.get(self.kind, {}).items():
            body[remote_name] = getattr(params, name)
        if enable_thinking:
            body["chat_template_kwargs"] = {"enable_thinking": True}
        return body


def _error_message(response: httpx2.Response) -> str:
    try:
        error = response.json().get("error")
        return str(error.get("message") if isinstance(error, dict) else error)
    except (ValueError, AttributeError):
        return response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase


def raise_for(response: httpx2.Response, endpoint: Endpoint) -> None:
    """One line per failure, with a way forward."""
    status = response.status_code
    if status < 400:
        return
    message = _error_message(response)
    if status in (401, 403):
        hint = "check --api-key" if endpoint.api_key else "pass --api-key KEY"
        raise RemoteError(f"{endpoint.url} refused the request ({status}: {message}): {hint}")
    if status == 404:
        raise RemoteError(f"{endpoint.url} has no such endpoint ({message}): check the URL (it usually ends in /v1)")
    if status == 400 and ("context" in message.lower() and ("long" in message.lower() or "length" in message.lower())):
        numbers = [int(n) for n in re.findall(r"\d+", message)]
        needed = numbers[0] + 1 if numbers else endpoint.n_ctx + 1
        raise ContextFullError(needed, endpoint.n_ctx or (numbers[1] if len(numbers) > 1 else needed - 1))
    if status == 503:
        raise RemoteError(f"the server is busy or loading ({message}): try again in a moment")
    if status >= 500:
        raise RemoteError(f"the server failed ({status}: {message}): try again, or look at its log")
    raise RemoteError(f"the server refused the request ({status}: {message})")


def request(client: httpx2.Client, method: str, url: str, endpoint: Endpoint, **kwargs: Any) -> httpx2.Response:
    try:
        response = client.request(method, url, headers=endpoint.headers, **kwargs)
    except httpx2.ConnectError:
        raise RemoteError(f"cannot reach {endpoint.url}: is the server running? (`bonsai-tui serve` starts one)") from None
    except httpx2.TimeoutException:
        raise RemoteError(f"{endpoint.url} did not answer in time: is it overloaded, or the address wrong?") from None
    except httpx2.HTTPError as error:
        raise RemoteError(f"talking to {endpoint.url} failed: {error}") from None
    raise_for(response, endpoint)
    return response


@dataclass
class RemoteSession:
    """A ChatSession's surface over an OpenAI-compatible endpoint (chat, params, cancel, n_ctx)."""

    endpoint: Endpoint
    params: SamplingParams = field(default_factory=lambda: PRESETS[DEFAULT_PRESET])
    n_ctx: int = 0
    context_used: int = 0  # prompt + reply tokens of the last exchange, as the server counted them

    def __post_init__(self) -> None:
        self.n_ctx = self.n_ctx or self.endpoint.n_ctx
        self._cancel = threading.Event()
        self._response: httpx2.Response | None = None
        self._client = httpx2.Client(timeout=httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))

    @property
    def cached_ids(self) -> range:
        """Only its length means anything here: tokens in the server's context for this chat."""
        return range(self.context_used)

    def cancel(self) -> None:
        """Stop the reply: the connection is shut, so the server stops generating too. A shutdown
        (not a close) also wakes the reading thread at once, even while the server is silent."""
        self._cancel.set()
        response = self._response
        stream = response.extensions.get("network_stream") if response is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._client.close()

    def fit_messages(self, messages: Sequence[Message], reserve: int, enable_thinking: bool = False) -> list[Message]:
        """Drop the oldest turns until an estimate (4 characters a token) plus `reserve` fits."""
        kept = list(messages)
        limit = self.n_ctx or 1 << 30
        while sum(len(m["content"]) // 4 + 4 for m in kept) + reserve > limit:
            first = 1 if kept and kept[0]["role"] == "system" else 0
            if len(kept) - first <= 1:
                raise ContextFullError(sum(len(m["content"]) // 4 + 4 for m in kept) + reserve, limit)
            del kept[first]
        return kept

    def chat(self, messages: Sequence[Message], max_tokens: int = 512, enable_thinking: bool = False,
             constraint: Any = None, *, stop: threading.Event | None = None) -> Iterator[Event]:
        if constraint is not None:
            raise RemoteError("structured output is not available against a remote server yet")
        self._cancel.clear()
        body = self.endpoint.body(messages, self.params, max_tokens, enable_thinking)
        return self._stream(body, stop)

    def _stopped(self, stop: threading.Event | None) -> bool:
        return self._cancel.is_set() or (stop is not None and stop.is_set())

    def _watch(self, stop: threading.Event, finished: threading.Event) -> None:
        """The caller's stop event shuts the connection at once, even while the server is silent."""
        while not finished.wait(STOP_POLL_S):
            if stop.is_set():
                self.cancel()
                return

    def _stream(self, body: dict[str, Any], stop: threading.Event | None) -> Iterator[Event]:
        finished = threading.Event()
        if stop is not None:
            threading.Thread(target=self._watch, args=(stop, finished), name="remote-stop", daemon=True).start()
        try:
            yield from self._events(body, stop)
        finally:
            finished.set()

    def _events(self, body: dict[str, Any], stop: threading.Event | None) -> Iterator[Event]:
        started = time.perf_counter()
        pieces: list[str] = []
        first_at = 0.0
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        finish: str | None = None
        url = f"{self.endpoint.url}/chat/completions"
        try:
            with self._client.stream("POST", url, json=body, headers=self.endpoint.headers) as response:
                self._response = response
                if response.status_code >= 400:
                    response.read()
                    raise_for(response, self.endpoint)
                for line in response.iter_lines():
                    if self._stopped(stop):
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise RemoteError(f"the server stopped the reply: {_error_message_of(chunk)}")
                    usage = chunk.get("usage") or usage
                    timings = chunk.get("timings") or timings
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or ""
                        finish = choice.get("finish_reason") or finish
                        if text:
                            now = time.perf_counter()
                            first_at = first_at or now
                            pieces.append(text)
                            speed = (len(pieces) - 1) / (now - first_at) if len(pieces) > 1 else 0.0
                            yield TokenEvent(-1, text, len(pieces) - 1, speed)
        except httpx2.ConnectError:
            raise RemoteError(f"cannot reach {self.endpoint.url}: is the server running? (`bonsai-tui serve` starts one)") from None
        except httpx2.TimeoutException:
            raise RemoteError(f"{self.endpoint.url} stopped answering in the middle of the reply") from None
        except (httpx2.HTTPError, httpx2.StreamError, ValueError) as error:  # also: cancel() closed the stream
            if not self._stopped(stop):
                raise RemoteError(f"the reply from {self.endpoint.url} broke off: {error}") from None
        finally:
            self._response = None
        yield self._done(pieces, finish, usage, timings, started, first_at, stop)

    def _done(self, pieces: list[str], finish: str | None, usage: dict[str, Any], timings: dict[str, Any],
              started: float, first_at: float, stop: threading.Event | None) -> DoneEvent:
        ended = time.perf_counter()
        generated = int(usage.get("completion_tokens") or len(pieces))
        prompt = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        if self._stopped(stop):
            reason = StopReason.CANCELLED
        elif finish == "length":
            reason = StopReason.CONTEXT_FULL if self.n_ctx and prompt + generated >= self.n_ctx else StopReason.MAX_TOKENS
        else:
            reason = StopReason.EOS
        ttft = (first_at - started) if first_at else 0.0
        stats = GenerationStats(
            prompt_tokens=prompt, cached_tokens=cached, generated_tokens=generated,
            prefill_s=float(timings.get("prompt_ms", ttft * 1000)) / 1000,
            decode_s=float(timings.get("predicted_ms", (ended - first_at) * 1000 if first_at else 0)) / 1000,
            ttft_s=ttft,
        )
        self.context_used = prompt + generated
        return DoneEvent(reason, "".join(pieces), [], [], stats)


def _error_message_of(chunk: dict[str, Any]) -> str:
    error = chunk.get("error")
    return str(error.get("message") if isinstance(error, dict) else error)


# ---- what the chat screen is given -----------------------------------------------------------


class LocalBackend:
    """This machine's engine: a loaded Model, one ChatSession per chat."""

    where = ""
    ignored_params: frozenset[str] = frozenset()

    def __init__(self, model: "Model") -> None:
        self.model = model
        self.name = model.config.name
        self.history_key = str(model.path)  # what the history files conversations under

    def default_params(self) -> SamplingParams:
        return self.model.default_params()

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text)

    def new_session(self, n_ctx: int, params: SamplingParams) -> ChatSession:
        return ChatSession(self.model, n_ctx=n_ctx, params=params)

    def summary(self, n_ctx: int) -> ModelSummary:
        return ModelSummary(self.name, self.model.path.stat().st_size, self.model.threads, n_ctx)


class RemoteBackend:
    """An OpenAI-compatible server (connected): one RemoteSession per chat."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.name = endpoint.model_name or "remote model"
        self.where = endpoint.url
        self.history_key = f"{endpoint.url}#{self.name}"
        self.ignored_params = endpoint.ignored_params

    def default_params(self) -> SamplingParams:
        return PRESETS[DEFAULT_PRESET]

    def tokenize(self, text: str) -> list[int]:
        """The server's own count where it has llama-server's /tokenize, else about 4 characters a token."""
        if self.endpoint.kind in ("bonsai-tui", "llamacpp"):
            base = self.endpoint.url.removesuffix("/v1")
            try:
                with httpx2.Client(timeout=CONNECT_TIMEOUT_S) as client:
                    return request(client, "POST", f"{base}/tokenize", self.endpoint, json={"content": text}).json()["tokens"]
            except (RemoteError, ValueError, KeyError):
                pass
        return [0] * (len(text) // 4 + 1)

    def new_session(self, n_ctx: int, params: SamplingParams) -> RemoteSession:
        return RemoteSession(self.endpoint, params=params, n_ctx=self.endpoint.n_ctx or n_ctx)  # 0: unknown

    def summary(self, n_ctx: int) -> ModelSummary:
        return ModelSummary(self.name, 0, 0, n_ctx, where=self.where)


Backend = LocalBackend | RemoteBackend
