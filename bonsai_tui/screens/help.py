"""The keys, listed from the live bindings so the help never disagrees with what the keys do."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


KeyDisplay = Callable[[Binding], str]


def _keys(binding: Binding, key_display: KeyDisplay) -> str:
    return " / ".join(key_display(replace(binding, key=key.strip())) for key in binding.key.split(","))


def keys_text(sections: Iterable[tuple[str, Iterable[Binding]]], key_display: KeyDisplay) -> str:
    """Plain aligned text: a title per section, then one `keys  action` line per binding."""
    lines: list[str] = []
    for title, bindings in sections:
        lines += [title, *(f"  {_keys(b, key_display):<12} {b.description}" for b in bindings if b.description), ""]
    return "\n".join(lines).rstrip()


class HelpScreen(ModalScreen[None]):
    """F1 or ?: every key of the chat, its messages and the app."""

    BINDINGS = [Binding("escape,f1,q,question_mark", "dismiss", "Close help")]

    def __init__(self, sections: Iterable[tuple[str, Iterable[Binding]]]) -> None:
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "Keys"
            body.border_subtitle = "Esc closes · every action is also in Ctrl+P"
            yield Static(keys_text(self.sections, self.app.get_key_display), id="help-keys", markup=False)
