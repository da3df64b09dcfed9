"""The history's dialogs: the sidebar asks (RenameRequested, DeleteRequested), the screen that
holds it asks the user and writes the store, then tells the sidebar to list again.

A mixin for a Screen or an App: it opens modal screens, which widgets should not do themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.dom import DOMNode

from bonsai_tui.screens.confirm import ConfirmScreen
from bonsai_tui.screens.rename import RenameScreen
from bonsai_tui.store import StoreError
from bonsai_tui.widgets.sidebar import ConversationSidebar, plural


class HistoryDialogs(DOMNode):
    @on(ConversationSidebar.RenameRequested)
    def _rename_requested(self, event: ConversationSidebar.RenameRequested) -> None:
        event.stop()
        sidebar, conversation = event.sidebar, event.conversation

        def rename(title: str | None) -> None:
            if title is not None and _stored(sidebar, lambda: sidebar.store.rename(conversation.id, title)):
                sidebar.post_message(ConversationSidebar.Renamed(conversation.id, title))

        self.app.push_screen(RenameScreen(conversation.title), rename)

    @on(ConversationSidebar.DeleteRequested)
    def _delete_requested(self, event: ConversationSidebar.DeleteRequested) -> None:
        event.stop()
        sidebar, conversation = event.sidebar, event.conversation
        question = (
            f"Delete “{conversation.title or 'New conversation'}” and its "
            f"{plural(conversation.message_count, 'message')}? This cannot be undone."
        )

        def delete(confirmed: bool | None) -> None:
            if confirmed and _stored(sidebar, lambda: sidebar.store.delete(conversation.id)):
                sidebar.post_message(ConversationSidebar.Deleted(conversation.id))

        self.app.push_screen(ConfirmScreen(question, yes="Delete"), delete)


def _stored(sidebar: ConversationSidebar, change: Callable[[], None]) -> bool:
    """Apply a change to the store and list again; False (and a notice) if it failed."""
    try:
        change()
    except StoreError as error:
        sidebar.notify(str(error), title="History", severity="error", timeout=10)
        return False
    sidebar.reload()
    return True
