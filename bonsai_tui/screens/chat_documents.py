"""The chat's documents: attach (Ctrl+O, the palette, or `/attach PATH` in the box), list and
remove attachments, put each question's best passages in front of it, show the sources under
the reply.

ChatScreen mixes this in; the indexing and the search are the document service's (on a thread),
this module only wires them to the screen. A question asked while the conversation has
attachments carries its context block and sources on its ChatMessage (`context`, `sources`): the
engine is sent the block before the question every time the conversation is re-sent, so the
cached prefix stays valid, and the history stores both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import get_current_worker
from textual.app import SystemCommand

from bonsai_tui.documents.chunk import estimate_tokens
from bonsai_tui.documents.index import DocumentIndexError, IndexReport, Progress
from bonsai_tui.documents.retrieve import context_prompt
from bonsai_tui.documents.service import DocumentService
from bonsai_tui.history import History
from bonsai_tui.screens.file_picker import FilePickerScreen
from bonsai_tui.screens.passage import PassageScreen
from bonsai_tui.store import StoreError
from bonsai_tui.widgets.attachments import AttachmentBar
from bonsai_tui.widgets.chat_message import ChatMessage
from bonsai_tui.widgets.sources import SourceList

if TYPE_CHECKING:
    from bonsai_tui.screens.chat import ChatScreen

ATTACH_COMMAND = "/attach"
PROGRESS_INTERVAL = 0.1  # seconds between two progress bar updates
NOTES_SHOWN = 3
UNKNOWN_CONTEXT_TOKENS = 4096  # the context assumed for the budget when a server does not say its own  # skipped files named in the notice; the rest are counted


@dataclass
class ChatDocuments:
    """What the chat needs to use documents: the service, and the history that knows which
    conversation is on screen (attaching creates it if it has not been saved yet)."""

    service: DocumentService
    history: History


def engine_turn(message: ChatMessage) -> dict[str, str]:
    """The message as the engine is sent it: a question over documents with its block first."""
    if message.context is None:
        return message.as_chat
    return {"role": message.role, "content": context_prompt(message.context, message.content)}


def engine_entry(entry: dict[str, Any]) -> dict[str, str]:
    """The same for a saved entry (the older turns of a long conversation)."""
    content = context_prompt(entry["context"], entry["content"]) if entry.get("context") else entry["content"]
    return {"role": entry["role"], "content": content}


def saved_documents(message: ChatMessage) -> dict[str, Any]:
    """The keys a question over documents adds to its saved entry."""
    if message.context is None:
        return {}
    return {"context": message.context, "sources": list(message.sources)}


def skipped_notice(report: IndexReport) -> str | None:
    if not report.skipped:
        return None
    named = "; ".join(f"{path.name}: {reason}" for path, reason in report.skipped[:NOTES_SHOWN])
    more = len(report.skipped) - NOTES_SHOWN
    return f"Skipped {len(report.skipped)} file{'s' if len(report.skipped) != 1 else ''}: {named}" + (
        f"; and {more} more" if more > 0 else ""
    )


def _throttled(show: Callable[[Progress], None], interval: float = PROGRESS_INTERVAL) -> Callable[[Progress], None]:
    """`show` at most every `interval` seconds (and for the last file): each call waits for the UI
    thread, and a folder of ten thousand files must not wait ten thousand times."""
    last = -interval

    def maybe_show(progress: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= interval or progress.files_done == progress.files_total:
            last = now
            show(progress)

    return maybe_show


class DocumentsMixin:
    """Documents for ChatScreen (needs `documents`, `session`, `model`, `prompt`, `chat_messages`)."""

    documents: ChatDocuments | None
    searching_documents = False  # a question's passages are being looked up: it is not sent yet

    @property
    def attachment_bar(self: ChatScreen) -> AttachmentBar:
        return self.query_one("#attachments", AttachmentBar)

    def _conversation_id(self: ChatScreen) -> int | None:
        return self.documents.history.conversation_id if self.documents else None

    async def refresh_attachments(self: ChatScreen) -> None:
        """Show the attachments of the conversation now on screen."""
        conversation_id = self._conversation_id()
        try:
            attachments = [] if conversation_id is None else self.documents.service.attachments(conversation_id)
        except StoreError as error:
            self.notify(f"The attachments could not be read: {error}", severity="error")
            attachments = []
        await self.attachment_bar.show(attachments)

    # ---- attaching ------------------------------------------------------------------------------

    def action_attach_files(self: ChatScreen) -> None:
        if self.documents is None:
            self.notify("Documents need the history database, which could not be opened.", severity="warning")
            return
        self.app.push_screen(FilePickerScreen(), self._picked)

    def _picked(self: ChatScreen, path: Path | None) -> None:
        if path is not None:
            self.attach(path)

    async def attach_command(self: ChatScreen, text: str) -> bool:
        """`/attach PATH` typed in the box: attach it (True), or not a command (False)."""
        if not (text == ATTACH_COMMAND or text.startswith(ATTACH_COMMAND + " ")):
            return False
        self.prompt.clear()
        path = text[len(ATTACH_COMMAND) :].strip()
        if not path or self.documents is None:
            self.action_attach_files()  # the picker (or why there is none)
        else:
            self.attach(Path(path).expanduser())
        return True

    @work(thread=True, group="attach")
    def attach(self: ChatScreen, path: Path) -> None:
        """Index and attach `path` on a thread, with a progress bar above the message box; leaving
        the app stops it between two files."""
        bar = self.attachment_bar
        worker = get_current_worker()
        try:
            conversation_id = self.documents.history.ensure_conversation()
            report = self.documents.service.attach(
                conversation_id,
                path,
                _throttled(lambda p: self.app.call_from_thread(bar.show_progress, p.files_done, p.files_total)),
                lambda: worker.is_cancelled,
            )
            if worker.is_cancelled:
                return
        except (DocumentIndexError, StoreError) as error:
            self.app.call_from_thread(self.notify, str(error), title="Not attached", severity="error")
            return
        finally:
            self.app.call_from_thread(bar.hide_progress)
        self.app.call_from_thread(self._attached, path, report)

    async def _attached(self: ChatScreen, path: Path, report: IndexReport) -> None:
        await self.refresh_attachments()
        usable = len(report.document_ids)
        self.notify(f"Attached {path.name}: {usable} file{'s' if usable != 1 else ''} to answer from.")
        notice = skipped_notice(report)
        if notice:
            self.notify(notice, severity="warning", timeout=10)

    # (handlers by name, not @on: a mixin's decorated handlers are not collected)
    async def on_attachment_bar_remove_requested(self: ChatScreen, event: AttachmentBar.RemoveRequested) -> None:
        conversation_id = self._conversation_id()
        if conversation_id is None:
            return
        try:
            self.documents.service.detach(conversation_id, event.path)
        except StoreError as error:
            self.notify(str(error), severity="error")
            return
        await self.refresh_attachments()
        self.notify(f"Removed {event.path.name}: the next questions no longer use it.")
        self.prompt.focus()

    # ---- asking ---------------------------------------------------------------------------------

    async def add_documents_context(self: ChatScreen, question: ChatMessage) -> None:
        """Give `question` the best passages of the attachments (nothing when it has none)."""
        conversation_id = self._conversation_id()
        if conversation_id is None or not self.attachment_bar.attachments:
            return
        model = self.backend  # backend.tokenize: the engine's, or the server's
        n_ctx = self.session.n_ctx or UNKNOWN_CONTEXT_TOKENS  # a server that does not say
        # what the conversation already fills, the reply's room, and the question itself stay free
        reserve = min(self.settings.max_tokens, n_ctx // 2)
        free = n_ctx - self.status.context_used - reserve - estimate_tokens(question.content)
        self.searching_documents = True
        try:
            found = await asyncio.to_thread(
                self.documents.service.context_for_conversation,
                conversation_id, question.content, n_ctx, lambda text: len(model.tokenize(text)), free,
            )
        except (DocumentIndexError, StoreError) as error:
            self.notify(f"The documents were not searched: {error}", severity="error")
            return
        finally:
            self.searching_documents = False
        if found is None:
            return
        retrieval, _ = found
        question.context = retrieval.block
        question.sources = tuple(source.as_dict() for source in retrieval.sources)

    async def show_sources(self: ChatScreen) -> None:
        """Under each reply to a question over documents, the sources it was given."""
        question: ChatMessage | None = None
        for message in self.chat_messages:
            if message.role == "user":
                question = message
            elif question is not None and question.context is not None and not message.query(SourceList):
                await message.mount(SourceList(list(question.sources)))

    def on_source_list_selected(self: ChatScreen, event: SourceList.Selected) -> None:
        self.app.push_screen(PassageScreen(event.source))

    def documents_commands(self: ChatScreen) -> Iterator[SystemCommand]:
        yield SystemCommand("Attach files", "Attach a file or folder to answer from (Ctrl+O)", self.action_attach_files)
