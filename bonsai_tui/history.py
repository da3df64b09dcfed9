"""Keeps the conversation on screen in the history store, and brings stored ones back.

The chat screen announces its state (messages with their stats, and the generation settings)
when a message is sent, when a reply finishes or is stopped, and when the chat is cleared. Each
announcement is synced into the store on a thread of its own (announcements are written in
order): the messages that still match what was last written stay, the rest are replaced in one
transaction (an edit or a regenerate rewrites the tail), so every sent message and every finished
reply is on disk moments after it exists, and the UI never waits for the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from bonsai_tui.generation_settings import GenerationSettings
from bonsai_tui.store import STOPPED, Store, StoreError, reply_status
from engine.sampling import SamplingParams

SaveDone = Callable[[int | None, StoreError | None], None]  # (conversation id, error), on the saver thread


def _status(entry: dict[str, Any]) -> str:
    return reply_status(entry["stop_reason"]) if "stop_reason" in entry else "complete"


def stored_params(settings: GenerationSettings) -> dict[str, Any]:
    return {**asdict(settings.params), "max_tokens": settings.max_tokens, "output": settings.output,
            "json_schema": settings.json_schema}


def settings_from(params: dict[str, Any], system_prompt: str, preset: str, fallback: GenerationSettings) -> GenerationSettings:
    if not params:
        return fallback
    sampling = {k: v for k, v in params.items() if k in SamplingParams.__dataclass_fields__}
    return GenerationSettings(
        params=SamplingParams(**sampling),
        max_tokens=int(params.get("max_tokens", fallback.max_tokens)),
        system_prompt=system_prompt,
        preset=preset or fallback.preset,
        output=str(params.get("output", fallback.output)),
        json_schema=str(params.get("json_schema", fallback.json_schema)),
    )


@dataclass
class _Written:
    """One conversation as last written: its id (None until the first save) and its rows."""

    conversation_id: int | None = None
    rows: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # (role, content, status, context)


class History:
    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.model = model
        self._current = _Written()  # the conversation on screen
        self._saver = ThreadPoolExecutor(1, thread_name_prefix="history")
        self._closed = False

    @property
    def conversation_id(self) -> int | None:
        return self._current.conversation_id

    def forget_current(self) -> None:
        """The conversation on screen is gone (deleted): the next save starts a new one."""
        self._current = _Written()

    def save(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> int | None:
        """Sync the conversation on screen now; an empty one starts a new conversation next time.
        Returns the conversation's id."""
        finished = [m for m in messages if m["content"] or "stop_reason" in m]
        if not finished:
            self._current = _Written()
            return None
        return self._write(self._current, finished, settings)

    def save_later(self, messages: list[dict[str, Any]], settings: GenerationSettings, done: SaveDone) -> None:
        """`save` on the saver thread; `done` is called there with the id or the error."""
        finished = [m for m in messages if m["content"] or "stop_reason" in m]
        if not finished:
            self._current = _Written()
            return
        target = self._current  # switching conversations meanwhile must not redirect this save

        def write() -> None:
            try:
                done(self._write(target, finished, settings), None)
            except StoreError as error:
                done(target.conversation_id, error)

        if self._closed:  # the app is ending: write it now, nothing will wait for the thread
            write()
        else:
            self._saver.submit(write)

    def flush(self) -> None:
        """Wait until every save asked for so far is written."""
        if not self._closed:
            self._saver.submit(lambda: None).result()

    def close(self) -> None:
        """Write what is still queued; later saves are written at once, on the caller's thread."""
        self._closed = True
        self._saver.shutdown(wait=True)

    def _write(self, target: _Written, finished: list[dict[str, Any]], settings: GenerationSettings) -> int:
        rows = [(m["role"], m["content"], _status(m), m.get("context")) for m in finished]
        entries = [
            {
                "role": m["role"], "content": m["content"], "status": _status(m), "stats": m.get("stats"),
                "context": m.get("context"), "sources": m.get("sources", ()),
            }
            for m in finished
        ]
        options = {"system_prompt": settings.system_prompt, "params": stored_params(settings), "preset": settings.preset}
        if target.conversation_id is None:
            target.conversation_id = self.store.create_conversation(model=self.model, messages=entries, **options)
        else:
            keep = 0
            while keep < min(len(rows), len(target.rows)) and rows[keep] == target.rows[keep]:
                keep += 1
            self.store.replace_tail(target.conversation_id, keep, entries[keep:], **options)
        target.rows = rows
        return target.conversation_id

    def ensure_conversation(self) -> int:
        """The conversation on screen, created (empty) if it has not been saved yet: documents
        can be attached before the first message."""
        self.flush()  # a first save on its way creates it
        if self._current.conversation_id is None:
            self._current.conversation_id = self.store.create_conversation(model=self.model)
        return self._current.conversation_id

    def open(self, conversation_id: int, fallback: GenerationSettings) -> tuple[list[dict[str, Any]], GenerationSettings]:
        """The stored conversation as the chat screen shows it, and its settings."""
        self.flush()  # a save still on its way belongs in what is read
        conversation = self.store.load_conversation(conversation_id)
        self._current = _Written(conversation_id, [(m.role, m.content, m.status, m.context) for m in conversation.messages])
        messages = []
        for message in conversation.messages:
            entry: dict[str, Any] = message.as_chat()
            if message.stats is not None and message.stop_reason is not None:
                entry["stats"], entry["stop_reason"] = message.stats, message.stop_reason
            elif message.status == STOPPED:
                entry["stop_reason"] = "cancelled"
            if message.context is not None:
                entry["context"], entry["sources"] = message.context, list(message.sources)
            messages.append(entry)
        settings = settings_from(conversation.params, conversation.system_prompt, conversation.preset, fallback)
        return messages, settings
