"""Under a reply: the passages it was given (file and lines); selecting one shows the passage."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.message import Message
from textual.widgets import Button, Label

NOTHING_FOUND_LABEL = "Sources: nothing relevant found in the attached files"


def source_label(source: dict[str, Any]) -> str:
    return f"{source['path']}:{source['start_line']}-{source['end_line']}"


class SourceButton(Button):
    def __init__(self, source: dict[str, Any]) -> None:
        super().__init__(source_label(source), compact=True, classes="source")
        self.source = source
        self.tooltip = source.get("heading") or None


class SourceList(HorizontalGroup):
    DEFAULT_CSS = """
    SourceList { height: auto; padding: 0 0 0 1; }
    SourceList > Label { width: auto; color: $text-muted; padding-right: 1; }
    SourceList > .source { width: auto; margin-right: 1; color: $text-accent; }
    """

    class Selected(Message):
        """A source was chosen: show its passage."""

        def __init__(self, source: dict[str, Any]) -> None:
            super().__init__()
            self.source = source

    def __init__(self, sources: list[dict[str, Any]]) -> None:
        super().__init__(classes="sources")
        self.sources = list(sources)

    def compose(self) -> ComposeResult:
        if not self.sources:
            yield Label(NOTHING_FOUND_LABEL)
            return
        yield Label("Sources:")
        for source in self.sources:
            yield SourceButton(source)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if isinstance(event.button, SourceButton):
            event.stop()
            self.post_message(self.Selected(event.button.source))
