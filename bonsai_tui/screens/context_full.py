"""Asked when the conversation no longer fits the context: drop old turns, or start afresh."""

from __future__ import annotations

from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

ContextChoice = Literal["drop", "new"]


class ContextFullScreen(ModalScreen[ContextChoice | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical(id="context-full-box") as box:
            box.border_title = "The context is full"
            yield Label(self.reason, id="context-full-reason")
            with Horizontal(id="context-full-buttons"):
                yield Button("Drop oldest turns", id="drop", variant="primary")
                yield Button("New chat", id="new")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        choices: dict[str | None, ContextChoice] = {"drop": "drop", "new": "new"}
        self.dismiss(choices.get(event.button.id))
