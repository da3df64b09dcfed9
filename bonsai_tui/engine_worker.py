"""Runs the engine off the UI thread: one reply at a time, its tokens posted to the UI in batches.

The reply runs on the engine's one thread (engine/threads.py), which never waits on the UI: it
hands batches over with `post_message`, which is thread-safe and returns at once. Batching (every FLUSH_SECONDS at most) keeps a fast model from
flooding the UI with one Markdown update per token.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence

from textual.dom import DOMNode
from textual.message import Message
from textual.worker import Worker, WorkerError, get_current_worker

from bonsai_tui.crash_log import log_crash
from engine.constraints import Constraint
from engine.errors import EngineError
from engine.session import ChatSession, DoneEvent, TokenEvent
from engine.threads import on_engine_thread

# the first token is shown at once; later ones at most this often. Every UI update takes CPU the
# engine's threads want (2 cores): 10 updates a second read smoothly and cost little
FLUSH_SECONDS = 0.1
# a reply's prefill waits (at most this long) until the screen has laid out and painted the new
# messages: run beside it, that UI work would hold up the engine's thread team (2 cores)
SETTLE_SECONDS = 0.5


class ReplyTokens(Message):
    """New text of the reply being generated (several tokens at once)."""

    def __init__(self, text: str, decode_tok_s: float, context_used: int) -> None:
        super().__init__()
        self.text = text
        self.decode_tok_s = decode_tok_s
        self.context_used = context_used  # tokens in the KV cache: prompt + reply so far


class ReplyFinished(Message):
    """The reply ended (end of turn, token budget, stop, or full context)."""

    def __init__(self, done: DoneEvent) -> None:
        super().__init__()
        self.done = done


class ReplyFailed(Message):
    """The reply could not be generated; `error` is a one-line message for the user."""

    def __init__(self, error: EngineError) -> None:
        super().__init__()
        self.error = error


class ReplyGenerator:
    """Owns a ChatSession and runs `ChatSession.chat` on a Textual thread worker.

    `busy` stays true until the UI has handled ReplyFinished / ReplyFailed (call `settle()` then),
    so a new reply never starts before the last batch of the previous one was shown.
    """

    def __init__(self, owner: DOMNode, session: ChatSession) -> None:
        self.owner = owner
        self.session = session
        self.busy = False
        self.worker: Worker | None = None
        self._stop = threading.Event()
        self._settled = threading.Event()

    def start(
        self,
        messages: Sequence[dict[str, str]],
        max_tokens: int,
        enable_thinking: bool,
        make_constraint: Callable[[], Constraint | None] | None = None,
    ) -> Worker:
        """`make_constraint` runs on the worker thread: the first JSON constraint of a model builds
        llguidance's view of its vocabulary (seconds for 151k tokens)."""
        if self.busy:
            raise RuntimeError("a reply is already being generated")
        self.busy = True
        self._stop = threading.Event()  # this reply's own: a stop pressed before the engine starts counts
        self._settled = threading.Event()
        self.owner.call_after_refresh(self._settled.set)  # after the screen's next layout and paint
        conversation = [dict(m) for m in messages]
        self.worker = self.owner.run_worker(
            lambda: self._run(conversation, max_tokens, enable_thinking, make_constraint),
            name="reply",
            group="reply",
            thread=True,
            exit_on_error=False,
        )
        return self.worker

    def stop(self) -> None:
        """Ask the running reply to stop: before its next token, or between two prefill slices."""
        self._stop.set()
        self._settled.set()

    async def finish(self) -> None:
        """Stop the running reply and wait until the engine thread has left the model."""
        self.stop()
        if self.worker is not None:
            with contextlib.suppress(WorkerError):  # it ended one way or another: that is all we wait for
                await self.worker.wait()

    def settle(self) -> None:
        self.busy = False

    def _post_tokens(self, pieces: list[str], decode_tok_s: float) -> None:
        self.owner.post_message(ReplyTokens("".join(pieces), decode_tok_s, len(self.session.cached_ids)))

    def _run(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        enable_thinking: bool,
        make_constraint: Callable[[], Constraint | None] | None = None,
    ) -> None:
        worker = get_current_worker()
        # the engine's kernels are launched from its one thread (see engine/threads.py)
        on_engine_thread(lambda: self._generate(worker, messages, max_tokens, enable_thinking, make_constraint))

    def _generate(
        self,
        worker: Worker,
        messages: list[dict[str, str]],
        max_tokens: int,
        enable_thinking: bool,
        make_constraint: Callable[[], Constraint | None] | None,
    ) -> None:
        stop = self._stop
        self._settled.wait(SETTLE_SECONDS)
        try:
            constraint = make_constraint() if make_constraint is not None else None
            events = self.session.chat(
                messages, max_tokens, enable_thinking=enable_thinking, stop=stop, constraint=constraint
            )
            pending: list[str] = []
            last_flush = time.monotonic()
            for event in events:
                if worker.is_cancelled:
                    stop.set()
                if isinstance(event, TokenEvent):
                    pending.append(event.text)
                    now = time.monotonic()
                    if event.index == 0 or now - last_flush >= FLUSH_SECONDS:
                        self._post_tokens(pending, event.decode_tok_s)
                        pending.clear()
                        last_flush = now
                elif isinstance(event, DoneEvent):
                    if pending:
                        self._post_tokens(pending, event.stats.decode_tok_s)
                    self.owner.post_message(ReplyFinished(event))
        except EngineError as error:
            self.owner.post_message(ReplyFailed(error))
        except Exception as error:  # the UI shows one line; the details go to the log
            self.owner.post_message(ReplyFailed(EngineError(f"unexpected error: {error} (details in {log_crash()})")))
