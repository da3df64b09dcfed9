"""Ctrl+O: pick a file or a folder to attach to the conversation.

Enter on a file attaches it; Enter on a folder opens it; `a` (or the Attach button) attaches
whatever is highlighted, folder included. A path can also be typed in the box above the tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label


class VisibleDirectoryTree(DirectoryTree):
    """No hidden files or folders (the index leaves them out too)."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [path for path in paths if not path.name.startswith(".")]


class FilePickerScreen(ModalScreen[Path | None]):
    DEFAULT_CSS = """
    FilePickerScreen { align: center middle; }
    #picker-box { width: 90%; max-width: 100; height: 80%; border: round $primary; background: $surface; padding: 0 1; }
    #picker-tree { height: 1fr; }
    #picker-hint { color: $text-muted; width: 100%; height: auto; }
    #picker-buttons { height: auto; align-horizontal: right; }
    #picker-buttons Button { margin-left: 1; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("a", "attach_highlighted", "Attach highlighted"),
        Binding("backspace", "up", "Parent folder", show=False),
    ]

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        self.start = (start or Path.cwd()).resolve()

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box") as box:
            box.border_title = "Attach a file or folder"
            yield Input(placeholder="or type a path and press Enter", id="picker-path")
            yield VisibleDirectoryTree(self.start, id="picker-tree")
            yield Label(
                "Enter: attach a file, open a folder · a: attach the highlighted one (folders too) · "
                "Backspace: parent folder · Esc: cancel",
                id="picker-hint",
            )
            with Horizontal(id="picker-buttons"):
                yield Button("Attach", id="picker-attach", variant="primary")
                yield Button("Cancel", id="picker-cancel")

    def on_mount(self) -> None:
        self.tree.focus()

    @property
    def tree(self) -> VisibleDirectoryTree:
        return self.query_one("#picker-tree", VisibleDirectoryTree)

    @on(DirectoryTree.FileSelected)
    def _file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(event.path)

    @on(Input.Submitted, "#picker-path")
    def _path_typed(self, event: Input.Submitted) -> None:
        path = Path(os.path.expanduser(event.value.strip()))
        if not event.value.strip():
            return
        if not path.exists():
            self.notify(f"{event.value.strip()}: no such file or folder", severity="error")
            return
        self.dismiss(path)

    def action_attach_highlighted(self) -> None:
        node = self.tree.cursor_node
        if node is not None and node.data is not None:
            self.dismiss(Path(node.data.path))

    def action_up(self) -> None:
        if self.tree.has_focus:
            self.tree.path = Path(self.tree.path).parent

    @on(Button.Pressed, "#picker-attach")
    def _attach_pressed(self) -> None:
        self.action_attach_highlighted()

    @on(Button.Pressed, "#picker-cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)
