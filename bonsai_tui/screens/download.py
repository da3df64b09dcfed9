"""First run: download the model with a progress bar, or, when that cannot work, offer a way on.

Dismisses with the path of a model file to open: the downloaded model, a local GGUF the user
typed, or the demo model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Horizontal, Middle, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, ProgressBar

from bonsai_tui import hub
from bonsai_tui.cli import log_crash


def transfer_text(p: hub.Progress) -> str:
    eta = f" · {p.eta_s:.0f} s left" if p.eta_s is not None else ""
    return f"{p.done / 1e6:,.1f} / {p.total / 1e6:,.1f} MB · {p.bytes_per_s / 1e6:.1f} MB/s{eta}"


class DownloadScreen(Screen[Path]):
    BINDINGS = [Binding("escape", "cancel", "Cancel download")]

    def __init__(self, choice: hub.ModelChoice, demo_model: Callable[[], Path]) -> None:
        super().__init__()
        self.choice = choice
        self.demo_model = demo_model
        self.cancel_event = threading.Event()

    def compose(self) -> ComposeResult:
        with Middle():
            with Center():
                with Vertical(id="download-box") as box:
                    box.border_title = "bonsai-tui · first run"
                    yield Label(f"Downloading {self.choice.name}", id="download-title")
                    yield Label(f"{self.choice.repo} / {self.choice.filename}", id="download-file")
                    yield ProgressBar(show_eta=False, id="download-progress")
                    yield Label("Asking the hub…", id="download-transfer")
                    yield Label("", id="download-error")
                    with Horizontal(id="download-actions"):
                        yield Button("Retry", id="retry", variant="primary")
                        yield Button("Try the demo model", id="demo")
                    yield Input(placeholder="…or the path of a local .gguf file, then Enter", id="local-path")
        yield Footer()

    def on_mount(self) -> None:
        self._show_actions(False)
        self.start_download()

    def _show_actions(self, visible: bool) -> None:
        for widget in ("#download-actions", "#local-path", "#download-error"):
            self.query_one(widget).display = visible
        self.query_one(ProgressBar).display = not visible

    # ---- the download -----------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False)
    def start_download(self) -> None:
        self.cancel_event.clear()
        try:
            path = hub.download(self.choice, self._report, self.cancel_event)
        except hub.HubError as error:
            self.app.call_from_thread(self._failed, str(error))
            return
        except Exception as error:
            self.app.call_from_thread(self._failed, f"unexpected error: {error} (details in {log_crash()})")
            return
        self.app.call_from_thread(self.dismiss, path)

    def _report(self, progress: hub.Progress) -> None:
        self.app.call_from_thread(self._show_progress, progress)

    def _show_progress(self, progress: hub.Progress) -> None:
        self.query_one(ProgressBar).update(total=progress.total or None, progress=progress.done)
        self.query_one("#download-transfer", Label).update(transfer_text(progress))

    def _failed(self, message: str) -> None:
        self.query_one("#download-error", Label).update(message)
        self._show_actions(True)
        self.query_one("#retry", Button).focus()

    # ---- the ways on ------------------------------------------------------------------------

    def action_cancel(self) -> None:
        self.cancel_event.set()

    @on(Button.Pressed, "#retry")
    def _retry(self) -> None:
        self._show_actions(False)
        self.query_one("#download-transfer", Label).update("Asking the hub…")
        self.start_download()

    @on(Button.Pressed, "#demo")
    def _demo(self) -> None:
        self.dismiss(self.demo_model())

    @on(Input.Submitted, "#local-path")
    def _local(self, event: Input.Submitted) -> None:
        path = Path(event.value.strip()).expanduser()
        if path.is_file():
            self.dismiss(path)
        else:
            self.query_one("#download-error", Label).update(f"{path}: no such file")

