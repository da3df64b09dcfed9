"""Keeps the conversation on screen in the history store, and brings stored ones back.

The chat screen announces its state (messages with their stats, and the generation settings)
when a message is sent, when a reply finishes or is stopped, and when the chat is cleared. Each
announcement is synced into the store: the stored messages that still match stay, the rest are
replaced (an edit or a regenerate rewrites the tail), so every sent message and every finished
reply is on disk as soon as it exists.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bonsai_tui.store import STOPPED, Store, StoredMessage, reply_status
from bonsai_tui.generation_settings import GenerationSettings
from engine.sampling import SamplingParams


def _status(entry: dict[str, Any]) -> str:
    return reply_status(entry["stop_reason"]) if "stop_reason" in entry else "complete"


def _same(stored: StoredMessage, entry: dict[str, Any]) -> bool:
    return (stored.role, stored.content, stored.status, stored.context) == (
        entry["role"], entry["content"], _status(entry), entry.get("context")
    )


def stored_params(settings: GenerationSettings) -> dict[str, Any]:
    return {**asdict(settings.params), "max_tokens": settings.max_tokens}


def settings_from(params: dict[str, Any], system_prompt: str, preset: str, fallback: GenerationSettings) -> GenerationSettings:
    if not params:
        return fallback
    sampling = {k: v for k, v in params.items() if k in SamplingParams.__dataclass_fields__}
    return GenerationSettings(
        params=SamplingParams(**sampling),
        max_tokens=int(params.get("max_tokens", fallback.max_tokens)),
        system_prompt=system_prompt,
        preset=preset or fallback.preset,
    )


class History:
    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.model = model
        self.conversation_id: int | None = None

    def save(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> None:
        """Sync the conversation on screen; an empty one starts a new conversation next time."""
        finished = [m for m in messages if m["content"] or "stop_reason" in m]
        if not finished:
            self.conversation_id = None
            return
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(model=self.model)
        cid = self.conversation_id
        stored = self.store.load_conversation(cid).messages
        keep = 0
        while keep < min(len(stored), len(finished)) and _same(stored[keep], finished[keep]):
            keep += 1
        if keep < len(stored):
            self.store.truncate(cid, keep)
        for entry in finished[keep:]:
            self.store.add_message(
                cid, entry["role"], entry["content"], status=_status(entry), stats=entry.get("stats"),
                context=entry.get("context"), sources=entry.get("sources", ()),
            )
        self.store.set_params(
            cid, system_prompt=settings.system_prompt, params=stored_params(settings), preset=settings.preset
        )

    def ensure_conversation(self) -> int:
        """The conversation on screen, created (empty) if it has not been saved yet: documents
        can be attached before the first message."""
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(model=self.model)
        return self.conversation_id

    def open(self, conversation_id: int, fallback: GenerationSettings) -> tuple[list[dict[str, Any]], GenerationSettings]:
        """The stored conversation as the chat screen shows it, and its settings."""
        conversation = self.store.load_conversation(conversation_id)
        self.conversation_id = conversation_id
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
