"""Conversation slots in front of one engine: who generates, when, and with which KV cache.

Each slot is a ChatSession with its own KV cache, kept across requests, so a conversation that
comes back lands on the slot holding its prefix and only its new tokens are prefilled (as
llama-server picks slots by prompt similarity). One engine thread runs every active reply a
token at a time in turn: model weights and scratch buffers are shared, so two forwards never run
at once, and two streams both advance. Requests beyond the slots wait in a bounded queue; past
it `submit` refuses (the route answers 503 with Retry-After).

Routes talk to a Job through `await job.next()`: Started (the prompt fits and the reply has
begun) -> Delta* (text, with the tokens that made it) -> Finished, or Failed at any point. The
engine thread hands events to the loop in batches (one wake-up per batch), and deltas that
arrive together leave as one chunk.
Setting `job.stop` (a client that went away) ends the reply before its next token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.constraints import Constraint
from engine.errors import EngineError
from engine.model import Model
from engine.sampling import SamplingParams
from engine.session import ChatSession, DoneEvent, Event, GenerationStats, Message, StopReason, TokenEvent, common_prefix_length

log = logging.getLogger("bonsai_tui.server")


SAME_CONVERSATION = 0.5  # a prompt continues a slot's conversation if it shares this much of its cache


@dataclass
class GenerationRequest:
    """One reply to generate, validated: either chat `messages` or raw `prompt_ids`."""

    params: SamplingParams
    messages: list[Message] | None = None
    prompt_ids: list[int] | None = None
    max_tokens: int | None = None  # None: until the end of turn or a full context
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: none; n: each token's log-probability and n alternatives
    enable_thinking: bool = False
    constraint: Constraint | None = None  # response_format: the grammar the reply follows


@dataclass(frozen=True)
class Started:
    slot: int


@dataclass(frozen=True)
class Delta:
    text: str
    tokens: tuple[TokenEvent, ...]  # the tokens generated since the previous delta


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    text: str  # the whole reply as the client received it
    stats: GenerationStats


@dataclass(frozen=True)
class Failed:
    error: Exception


JobEvent = Started | Delta | Finished | Failed


def merged(events: list[JobEvent]) -> list[JobEvent]:
    """Adjacent deltas as one (their text joined, their tokens in order)."""
    out: list[JobEvent] = []
    for event in events:
        if isinstance(event, Delta) and out and isinstance(out[-1], Delta):
            out[-1] = Delta(out[-1].text + event.text, out[-1].tokens + event.tokens)
        else:
            out.append(event)
    return out


class QueueFull(Exception):
    pass


class Stopped(Exception):
    """The server stopped the reply (it is shutting down)."""

    def __init__(self) -> None:
        super().__init__("the server is shutting down: the reply was stopped")


class StopStrings:
    """Finds the client's stop strings in the streamed text. Text that may be the start of one
    is held back until the next tokens tell; the stop string itself is never sent."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""
        self.matched = False

    def push(self, text: str) -> str:
        """Add generated text; return what can be sent now (everything before a stop string)."""
        if self.matched:
            return ""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.matched = True
            out, self.pending = self.pending[: min(hits)], ""
            return out
        held = max((self._overlap(s) for s in self.stops), default=0)
        cut = len(self.pending) - held
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def _overlap(self, stop: str) -> int:
        """Length of the longest end of `pending` that begins `stop`."""
        for n in range(min(len(stop) - 1, len(self.pending)), 0, -1):
            if self.pending.endswith(stop[:n]):
                return n
        return 0

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


@dataclass(eq=False)
class Job:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    stop: threading.Event = field(default_factory=threading.Event)  # set by the route: end it
    slot: int | None = None
    stream: Iterator[Event] | None = None
    stops: StopStrings = field(init=False)
    sent: list[str] = field(default_factory=list)
    token_chars: int = 0  # characters of text the token events carried
    unsent_tokens: list[TokenEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stops = StopStrings(self.request.stop)
        self._outbox: list[JobEvent] = []  # sent by the engine thread, not yet handed to the loop
        self._outbox_lock = threading.Lock()
        self._wake_pending = False
        self._ready: list[JobEvent] = []  # handed over, not yet read (the loop's side)

    def send(self, event: JobEvent) -> None:
        """From the engine thread. The loop is woken once per batch, not once per token: when it
        is busy (a slow client, a loaded machine), tokens wait together and leave as one chunk."""
        with self._outbox_lock:
            self._outbox.append(event)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._hand_over)
        except RuntimeError:  # the server's loop is closed: nobody is listening any more
            pass

    def _hand_over(self) -> None:
        with self._outbox_lock:
            batch, self._outbox, self._wake_pending = self._outbox, [], False
        self.events.put_nowait(batch)

    async def next(self) -> JobEvent:
        """The next event, on the loop; deltas that arrived together come merged."""
        if not self._ready:
            self._ready = merged(await self.events.get())
        return self._ready.pop(0)

    def on_token(self, event: TokenEvent) -> None:
        self.token_chars += len(event.text)
        self.unsent_tokens.append(event)
        self._emit(self.stops.push(event.text))

    def on_done(self, done: DoneEvent) -> None:
        tail = done.text[self.token_chars :]  # the last incomplete character, if any
        text = self.stops.push(tail)
        if not self.stops.matched:
            text += self.stops.flush()
        self._emit(text, force=True)
        if self.stops.matched or done.stop_reason is StopReason.EOS:
            reason = "stop"
        elif done.stop_reason in (StopReason.MAX_TOKENS, StopReason.CONTEXT_FULL):
            reason = "length"
        else:  # cancelled: the client is gone (nobody reads this) or the server is stopping
            self.send(Failed(Stopped()))
            return
        self.send(Finished(reason, "".join(self.sent), done.stats))

    def _emit(self, text: str, force: bool = False) -> None:
        if text or (force and self.unsent_tokens):
            self.sent.append(text)
            self.send(Delta(text, tuple(self.unsent_tokens)))
            self.unsent_tokens = []


class Scheduler:
    """The slots, the queue and the engine thread. `submit` and `close` may be called from any
    thread; everything else runs on the engine thread."""

    def __init__(self, model: Model, n_slots: int = 1, n_ctx: int = 0, queue_size: int = 16) -> None:
        self.model = model
        self.sessions = [ChatSession(model, n_ctx=n_ctx) for _ in range(n_slots)]
        self.n_ctx = self.sessions[0].n_ctx
        self.capacity = n_slots + queue_size
        self._free = list(range(n_slots))  # engine thread only
        self._last_used = [0] * n_slots  # engine thread only: when each slot was last given a job
        self._uses = 0
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._active: list[Job] = []
        self._closed = False
        self._stopping = threading.Event()  # set by stop_all()
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> Job:
        job = Job(request, loop)
        with self._cond:
            if self._closed or self._stopping.is_set():
                raise Stopped()
            if len(self._waiting) + len(self._active) >= self.capacity:
                raise QueueFull()
            self._waiting.append(job)
            self._cond.notify()
        return job

    def load(self) -> dict[str, int]:
        """For /health: slots generating and free, and requests waiting for one."""
        with self._cond:
            active, waiting = len(self._active), len(self._waiting)
        return {"slots_idle": len(self.sessions) - active, "slots_processing": active, "requests_waiting": waiting}

    def stop_all(self) -> None:
        """Stop every reply and refuse new ones: the server is going down. Takes no lock
        (safe from a signal handler); the engine thread stops the jobs before its next step."""
        self._stopping.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop every reply and the engine thread."""
        with self._cond:
            self._closed = True
            for job in [*self._waiting, *self._active]:
                job.stop.set()
            self._cond.notify()
        self._thread.join(timeout)

    # ---- the engine thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._active or self._closed):
                    self._cond.wait()
                if self._closed and not self._active:
                    return
                admitted = [self._waiting.popleft() for _ in range(min(len(self._waiting), len(self._free)))]
                if self._stopping.is_set():
                    for job in [*self._waiting, *self._active, *admitted]:
                        job.stop.set()
            for job in admitted:
                self._place(job)
            for job in list(self._active):
                self._step(job)

    def _place(self, job: Job) -> None:
        """Give the job the free slot whose cache it continues (the longest shared prefix, if that
        is at least half of what the slot holds), else the free slot least recently used, so a new
        conversation does not evict another one's cache for the sake of a few shared tokens."""
        shared = {i: self._shared_prefix(i, job.request) for i in self._free}
        continued = [i for i in self._free if shared[i] and shared[i] >= len(self.sessions[i].cached_ids) * SAME_CONVERSATION]
        best = max(continued, key=shared.__getitem__) if continued else min(self._free, key=self._last_used.__getitem__)
        self._uses += 1
        self._last_used[best] = self._uses
        self._free.remove(best)
        job.slot = best
        with self._cond:
            self._active.append(job)

    def _shared_prefix(self, slot: int, request: GenerationRequest) -> int:
        session = self.sessions[slot]
        if request.prompt_ids is not None:
            prompt = request.prompt_ids
        else:
            try:  # the ids this session would send: its own context where it answered this conversation
                prompt = session.prompt_ids(request.messages or [], request.enable_thinking)
            except Exception:  # the template fails: any slot will do, and _start reports it
                return 0
        return common_prefix_length(session.cached_ids, prompt)

    def _release(self, job: Job) -> None:
        with self._cond:
            self._active.remove(job)
        if job.slot is not None:
            self._free.append(job.slot)

    def _start(self, job: Job, session: ChatSession) -> None:
        request = job.request
        session.params = request.params
        session.logprobs = request.logprobs
        max_tokens = request.max_tokens or session.n_ctx
        if request.messages is not None:
            job.stream = session.chat(request.messages, max_tokens, request.enable_thinking,
                                      constraint=request.constraint, stop=job.stop)
        else:
            job.stream = session.generate(request.prompt_ids or [], max_tokens, constraint=request.constraint, stop=job.stop)
        job.send(Started(job.slot or 0))

    def _step(self, job: Job) -> None:
        session = self.sessions[job.slot or 0]
        try:
            if job.stream is None:
                if job.stop.is_set():  # the client left, or the server is stopping, before it began
                    job.send(Failed(Stopped()))
                    self._release(job)
                    return
                self._start(job, session)
            event = next(job.stream)  # job.stop (a client gone, the server stopping) ends it, in prefill too
        except Exception as error:  # a prompt past the context, a template error, or a bug: the route says which
            if not isinstance(error, (EngineError, ValueError)):
                log.error("generation failed", exc_info=error)
            job.send(Failed(error))
            self._release(job)
            return
        if isinstance(event, TokenEvent):
            job.on_token(event)
            if job.stops.matched:
                session.cancel()
        else:
            job.on_done(event)
            self._release(job)
