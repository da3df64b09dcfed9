"""Asks for a new conversation title; dismisses with the title, or None when cancelled or blank."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class RenameScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.current_title = title

    def compose(self) -> ComposeResult:
        with Vertical(id="rename-box") as box:
            box.border_title = "Rename conversation"
            box.border_subtitle = "Enter saves · Esc cancels"
            yield Label("Title", id="rename-label")
            yield Input(self.current_title, id="rename-title", select_on_focus=True)

    @on(Input.Submitted, "#rename-title")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
