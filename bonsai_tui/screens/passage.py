"""A source's passage, as the model was given it: file, lines, section, then the text."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class PassageScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    PassageScreen { align: center middle; }
    #passage-body { width: 90%; max-width: 110; height: auto; max-height: 80%; border: round $primary;
                    background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, source: dict[str, Any]) -> None:
        super().__init__()
        self.source = source

    def compose(self) -> ComposeResult:
        source = self.source
        with VerticalScroll(id="passage-body") as body:
            body.border_title = f"{source['path']}, lines {source['start_line']}-{source['end_line']}"
            body.border_subtitle = f"{source.get('heading') or 'no heading'} · score {source['score']:g} · Esc closes"
            yield Static(source["text"], markup=False, id="passage-text")
