"""The conversation view: the messages on screen, oldest first, and the older ones of a reopened
long conversation that wait off screen until asked for (still sent to the model).

It knows what the model is sent (`turns`, minus dropped ones) and what the history stores
(`saved`); the screen decides when either happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Button, Static

from bonsai_tui.widgets.chat_message import ChatMessage
from engine.session import GenerationStats, StopReason

VISIBLE_MESSAGES = 50  # of a reopened conversation, shown at once; older ones on request


def message_from(entry: dict[str, Any]) -> ChatMessage:
    """A message widget from the history's saved form."""
    message = ChatMessage(
        entry["role"],
        entry["content"],
        stats=GenerationStats(**entry["stats"]) if "stats" in entry else None,
        stop_reason=StopReason(entry["stop_reason"]) if "stop_reason" in entry else None,
    )
    message.context, message.sources = entry.get("context"), tuple(entry.get("sources", ()))
    return message


class ConversationView(VerticalScroll):
    def __init__(self, welcome: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.welcome = welcome
        # saved form, oldest first, each maybe marked "dropped" (no longer sent to the model)
        self.older: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Button("", id="earlier")
        yield Static(self.welcome, id="welcome", markup=False)

    def on_mount(self) -> None:
        self.anchor()
        self._show_earlier_button()

    @property
    def messages(self) -> list[ChatMessage]:
        return list(self.query_children(ChatMessage))

    def turns(
        self,
        as_turn: Callable[[ChatMessage], dict[str, str]],
        as_entry: Callable[[dict[str, Any]], dict[str, str]],
        leave_out: ChatMessage | None = None,
    ) -> list[dict[str, str]]:
        """The turns the model is sent (each message through `as_turn`, each older saved entry
        through `as_entry`): every one not dropped, and not `leave_out`, the reply being written."""
        older = [as_entry(e) for e in self.older if not e.get("dropped")]
        shown = [as_turn(m) for m in self.messages if m is not leave_out and not m.has_class("-dropped")]
        return older + shown

    def saved(self, extra: Callable[[ChatMessage], dict[str, Any]]) -> list[dict[str, Any]]:
        """Every message with each reply's stats (and `extra`'s keys), as the history stores it."""
        entries: list[dict[str, Any]] = [{k: v for k, v in e.items() if k != "dropped"} for e in self.older]
        for message in self.messages:
            entry: dict[str, Any] = dict(message.as_chat) | extra(message)
            if message.stats is not None and message.stop_reason is not None:
                entry["stats"] = asdict(message.stats)
                entry["stop_reason"] = message.stop_reason.value
            entries.append(entry)
        return entries

    async def add(self, messages: Iterable[ChatMessage]) -> None:
        self.query_one("#welcome").display = False
        await self.mount_all(list(messages))
        self.anchor()

    async def load(self, entries: list[dict[str, Any]]) -> None:
        """Show saved messages: the last VISIBLE_MESSAGES at once, older ones on request, so a
        conversation of thousands opens instantly."""
        await self.clear()
        entries = [entry for entry in entries if entry["role"] in ("user", "assistant")]
        self.older = entries[:-VISIBLE_MESSAGES]
        await self.add(map(message_from, entries[-VISIBLE_MESSAGES:]))
        self._show_earlier_button()

    async def clear(self) -> None:
        await self.query_children(ChatMessage).remove()
        self.older = []
        self._show_earlier_button()
        self.query_one("#welcome").display = True

    async def remove_from(self, first: ChatMessage) -> None:
        """Remove a message and everything after it (an edit replaces the later turns)."""
        messages = self.messages
        await self.remove_children(messages[messages.index(first) :])

    def drop_oldest(self, count: int) -> None:
        """Grey out (and stop sending) the `count` oldest turns still sent."""
        left = count
        for entry in [e for e in self.older if not e.get("dropped")][:left]:
            entry["dropped"] = True
            left -= 1
        for message in [m for m in self.messages if not m.has_class("-dropped")][:left]:
            message.add_class("-dropped")

    def _show_earlier_button(self) -> None:
        button = self.query_one("#earlier", Button)
        button.display = bool(self.older)
        button.label = f"↑ Show {min(len(self.older), VISIBLE_MESSAGES)} earlier messages ({len(self.older)} not shown)"

    async def show_earlier(self) -> None:
        """Show the next VISIBLE_MESSAGES older messages (the screen calls it on the button)."""
        batch, self.older = self.older[-VISIBLE_MESSAGES:], self.older[:-VISIBLE_MESSAGES]
        widgets = [message_from(entry) for entry in batch]
        for widget, entry in zip(widgets, batch):
            widget.set_class(bool(entry.get("dropped")), "-dropped")
        await self.mount_all(widgets, after="#earlier")
        self._show_earlier_button()
