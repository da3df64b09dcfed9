"""The history sidebar: saved conversations newest first, searchable, renamable, deletable.

It reads the Store (on a worker thread, the search debounced) and posts what the user asks for
(Selected, NewRequested, RenameRequested, DeleteRequested); the screen that holds it opens the
dialogs and writes the store (screens/history_dialogs.py), then posts Renamed / Deleted from it.
It never touches the chat. The app calls `reload()` after it saves a turn and sets `active_id`
to the conversation on show.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from textual.timer import Timer
from textual.worker import get_current_worker

from bonsai_tui.store import ConversationSummary, Store, StoreError

SEARCH_PAUSE_S = 0.15  # the search runs once typing pauses this long, not on every key


def short_date(timestamp: float, now: float | None = None) -> str:
    """The time for today, the day for this year, the full date before."""
    moment, today = time.localtime(timestamp), time.localtime(now)
    if moment[:3] == today[:3]:
        return time.strftime("%H:%M", moment)
    if moment.tm_year == today.tm_year:
        return time.strftime("%b %d", moment)
    return time.strftime("%Y-%m-%d", moment)


def plural(count: int, word: str) -> str:
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

    class _Request(Message):
        def __init__(self, sidebar: ConversationSidebar, conversation: ConversationSummary) -> None:
            super().__init__()
            self.sidebar = sidebar
            self.conversation = conversation

    class RenameRequested(_Request):
        """The user asked to rename `conversation` (the screen asks for the title)."""

    class DeleteRequested(_Request):
        """The user asked to delete `conversation` (the screen asks to confirm)."""

    class _Listed(Message):
        """The list read on the worker thread, for the UI thread to show."""

        def __init__(self, reading: int, conversations: list[ConversationSummary] | None, error: StoreError | None) -> None:
            super().__init__()
            self.reading = reading
            self.conversations = conversations
            self.error = error

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
        self._search_timer: Timer | None = None  # set while a search waits for typing to pause
        self._readings = 0  # reloads asked for; the list shows the last one when _shown == _readings
        self._shown = 0
        self._search = ""  # the search box's text

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
        return self._search  # kept from the box's Changed events: a reload may come before the box is composed

    @property
    def option_list(self) -> OptionList:
        return self.query_one("#sidebar-list", OptionList)

    @property
    def highlighted(self) -> ConversationSummary | None:
        index = self.option_list.highlighted
        return self.conversations[index] if index is not None and index < len(self.conversations) else None

    # ---- listing ------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the list again (newest first, filtered by the search text) on a worker thread,
        then show it keeping the cursor. A newer reload supersedes one still running."""
        self._search_timer = None
        self._readings += 1
        text, reading = self.search_text, self._readings
        self.run_worker(lambda: self._read(text, reading), thread=True, exclusive=True, group="sidebar-list")

    @property
    def up_to_date(self) -> bool:
        """The list shows the store as of the last reload, and no search is waiting."""
        return self._search_timer is None and self._shown == self._readings

    def _read(self, text: str, reading: int) -> None:
        try:
            conversations = self.store.search(text) if text.strip() else self.store.list_conversations()
        except StoreError as error:
            self.post_message(self._Listed(reading, None, error))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(self._Listed(reading, conversations, None))

    @on(_Listed)
    def _listed(self, event: _Listed) -> None:
        event.stop()
        if event.reading < self._readings:
            return  # a newer reload is on its way
        self._shown = event.reading
        if event.error is not None:
            self.notify(str(event.error), title="History", severity="error", timeout=10)
        elif event.conversations is not None:
            self._show_options(event.conversations)

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
        details = f"{short_date(conversation.updated)} · {plural(conversation.message_count, 'message')}"
        return Text.assemble(title, "\n", (details, "dim"))

    def watch_active_id(self) -> None:
        if self.is_mounted:
            self._show_options(self.conversations)

    @on(Input.Changed, "#sidebar-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self._search = event.value
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(SEARCH_PAUSE_S, self.reload)

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
        if self.highlighted is not None:
            self.post_message(self.RenameRequested(self, self.highlighted))

    def action_delete(self) -> None:
        if self.highlighted is not None:
            self.post_message(self.DeleteRequested(self, self.highlighted))
