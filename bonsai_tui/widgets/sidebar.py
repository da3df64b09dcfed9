"""The history sidebar: saved conversations newest first, searchable, renamable, deletable.

It reads and edits the Store itself and tells the screen what happened through messages
(Selected, NewRequested, Renamed, Deleted); it never touches the chat. The screen calls
`reload()` after it saves a turn and sets `active_id` to the conversation on show.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from bonsai_tui.screens.confirm import ConfirmScreen
from bonsai_tui.screens.rename import RenameScreen
from bonsai_tui.store import ConversationSummary, Store, StoreError

def short_date(timestamp: float, now: float | None = None) -> str:
    """The time for today, the day for this year, the full date before."""
    moment, today = time.localtime(timestamp), time.localtime(now)
    if moment[:3] == today[:3]:
        return time.strftime("%H:%M", moment)
    if moment.tm_year == today.tm_year:
        return time.strftime("%b %d", moment)
    return time.strftime("%Y-%m-%d", moment)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class ConversationSidebar(Vertical):
    """Enter opens the highlighted conversation; n new, r rename, Delete delete, / search."""

    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("r", "rename", "Rename"),
        Binding("delete,d", "delete", "Delete"),
        Binding("slash", "focus_search", "Search"),
    ]

    class Selected(Message):
        """The user chose a conversation to open."""

        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    class NewRequested(Message):
        """The user asked for a new, empty conversation."""

    class Renamed(Message):
        def __init__(self, conversation_id: int, title: str) -> None:
            super().__init__()
            self.conversation_id = conversation_id
            self.title = title

    class Deleted(Message):
        """A conversation is gone from the store (if it is the open one, the screen should clear it)."""

        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    active_id: reactive[int | None] = reactive(None)  # the conversation on show, marked in the list

    def __init__(self, store: Store, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.store = store
        self.conversations: list[ConversationSummary] = []  # as listed, in order

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Search  ( / )", id="sidebar-search")
        yield OptionList(id="sidebar-list")
        yield Static("", id="sidebar-empty")

    def on_mount(self) -> None:
        self.border_title = "History"
        self.border_subtitle = "n new  r rename  d delete"
        self.reload()

    @property
    def search_text(self) -> str:
        return self.query_one("#sidebar-search", Input).value

    @property
    def option_list(self) -> OptionList:
        return self.query_one("#sidebar-list", OptionList)

    @property
    def highlighted(self) -> ConversationSummary | None:
        index = self.option_list.highlighted
        return self.conversations[index] if index is not None and index < len(self.conversations) else None

    # ---- listing ------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the list again (newest first, filtered by the search text), keeping the cursor."""
        try:
            text = self.search_text
            conversations = self.store.search(text) if text.strip() else self.store.list_conversations()
        except StoreError as error:
            self.notify(str(error), title="History", severity="error", timeout=10)
            return
        self._show_options(conversations)

    def _show_options(self, conversations: list[ConversationSummary]) -> None:
        current = self.highlighted
        kept = current.id if current is not None else self.active_id
        self.conversations = conversations
        self.option_list.set_options(Option(self._prompt(c)) for c in conversations)
        ids = [c.id for c in conversations]
        self.option_list.highlighted = ids.index(kept) if kept in ids else (0 if ids else None)
        empty = self.query_one("#sidebar-empty", Static)
        empty.update("No matches." if self.search_text.strip() else "No conversations yet.")
        empty.display = not ids

    def _prompt(self, conversation: ConversationSummary) -> Text:
        marker = "▶ " if conversation.id == self.active_id else ""
        title = Text(marker + (conversation.title or "New conversation"), style="bold" if marker else "")
        details = f"{short_date(conversation.updated)} · {_plural(conversation.message_count, 'message')}"
        return Text.assemble(title, "\n", (details, "dim"))

    def watch_active_id(self) -> None:
        if self.is_mounted:
            self._show_options(self.conversations)

    @on(Input.Changed, "#sidebar-search")
    def _search_changed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#sidebar-search")
    def _search_submitted(self) -> None:
        self.option_list.focus()

    @on(OptionList.OptionSelected, "#sidebar-list")
    def _option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(self.Selected(self.conversations[event.option_index].id))

    # ---- actions ------------------------------------------------------------------------------

    def action_new(self) -> None:
        self.post_message(self.NewRequested())

    def action_focus_search(self) -> None:
        self.query_one("#sidebar-search", Input).focus()

    def action_rename(self) -> None:
        conversation = self.highlighted
        if conversation is None:
            return

        def rename(title: str | None) -> None:
            if title is not None and self._stored(lambda: self.store.rename(conversation.id, title)):
                self.post_message(self.Renamed(conversation.id, title))

        self.app.push_screen(RenameScreen(conversation.title), rename)

    def action_delete(self) -> None:
        conversation = self.highlighted
        if conversation is None:
            return
        question = (
            f"Delete “{conversation.title or 'New conversation'}” and its "
            f"{_plural(conversation.message_count, 'message')}? This cannot be undone."
        )

        def delete(confirmed: bool | None) -> None:
            if confirmed and self._stored(lambda: self.store.delete(conversation.id)):
                self.post_message(self.Deleted(conversation.id))

        self.app.push_screen(ConfirmScreen(question, yes="Delete"), delete)

    def _stored(self, change: Callable[[], None]) -> bool:
        """Apply a change to the store and show the new list; False (and a notice) if it failed."""
        try:
            change()
        except StoreError as error:
            self.notify(str(error), title="History", severity="error", timeout=10)
            return False
        self.reload()
        return True
