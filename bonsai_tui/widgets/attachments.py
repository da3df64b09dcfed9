"""Above the message box: the files and folders attached to the conversation (each removable),
and a progress bar while one is being indexed."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Label, ProgressBar

from bonsai_tui.documents.index import Attachment


def attachment_label(attachment: Attachment) -> str:
    files = f"{attachment.files} file{'s' if attachment.files != 1 else ''}"
    skipped = f", {attachment.skipped} skipped" if attachment.skipped else ""
    kind = "" if attachment.path.is_file() else "/"
    return f"{attachment.path.name}{kind} ({files}{skipped}) ✕"


class AttachmentChip(Button):
    """One attachment; pressing it (Enter, click) removes it from the conversation."""

    def __init__(self, attachment: Attachment) -> None:
        super().__init__(attachment_label(attachment), compact=True, classes="attachment")
        self.path = attachment.path
        self.tooltip = f"{attachment.path}\nPress to remove it from this conversation"


class AttachmentBar(Horizontal):
    DEFAULT_CSS = """
    AttachmentBar { height: auto; max-height: 4; padding: 0 1; display: none; }
    AttachmentBar.-shown { display: block; }
    AttachmentBar > Label { width: auto; color: $text-muted; padding-right: 1; }
    AttachmentBar > .attachment { margin-right: 1; width: auto; }
    AttachmentBar > ProgressBar { width: 40; display: none; }
    AttachmentBar.-indexing > ProgressBar { display: block; }
    """

    class RemoveRequested(Message):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attachments: list[Attachment] = []

    def compose(self) -> ComposeResult:
        yield Label("Attached:", id="attachments-title")
        yield ProgressBar(total=None, show_eta=False, id="attachments-progress")

    async def show(self, attachments: list[Attachment]) -> None:
        self.attachments = list(attachments)
        await self.query(AttachmentChip).remove()
        await self.mount_all([AttachmentChip(a) for a in attachments], before="#attachments-progress")
        self._update_visibility()

    def show_progress(self, files_done: int, files_total: int) -> None:
        self.add_class("-indexing")
        bar = self.query_one(ProgressBar)
        bar.update(total=files_total, progress=files_done)
        self.query_one("#attachments-title", Label).update(f"Indexing {files_done}/{files_total}:")
        self._update_visibility()

    def hide_progress(self) -> None:
        self.remove_class("-indexing")
        self.query_one("#attachments-title", Label).update("Attached:")
        self._update_visibility()

    def _update_visibility(self) -> None:
        self.set_class(bool(self.attachments) or self.has_class("-indexing"), "-shown")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if isinstance(event.button, AttachmentChip):
            event.stop()
            self.post_message(self.RemoveRequested(event.button.path))
