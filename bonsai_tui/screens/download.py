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
from bonsai_tui.crash_log import log_crash

# the worker may see hundreds of chunks a second: it only records the latest, which a timer shows
REFRESH_S = 0.1


def file_text(choice: hub.ModelChoice) -> str:
    size = f" · about {choice.approx_bytes / 1e6:,.0f} MB" if choice.approx_bytes else ""
    return f"{choice.repo} / {choice.filename or 'its Q2_0 GGUF'}{size}"  # a ternary file's name: from the hub


def transfer_text(p: hub.Progress) -> str:
    if p.total and p.done >= p.total:  # hashing a large file takes a moment: say why the bar is full
        return f"{p.total / 1e6:,.1f} MB downloaded · checking its sha256…"
    eta = f" · {p.eta_s:.0f} s left" if p.eta_s is not None else ""
    return f"{p.done / 1e6:,.1f} / {p.total / 1e6:,.1f} MB · {p.bytes_per_s / 1e6:.1f} MB/s{eta}"


def kept_text(p: hub.Progress | None) -> str:
    if p is None or not 0 < p.done < p.total:
        return ""
    return f"{p.done / 1e6:,.1f} of {p.total / 1e6:,.1f} MB downloaded so far"


class DownloadScreen(Screen[Path]):
    BINDINGS = [Binding("escape", "cancel", "Cancel download")]

    def __init__(self, choice: hub.ModelChoice, demo_model: Callable[[], Path]) -> None:
        super().__init__()
        self.choice = choice
        self.demo_model = demo_model
        self.cancel_event = threading.Event()
        self.latest: hub.Progress | None = None  # written by the worker, shown by the timer
        self.shown: hub.Progress | None = None
        self.stopped = False  # the download failed or was cancelled: the ways on are showing

    def compose(self) -> ComposeResult:
        with Middle():
            with Center():
                with Vertical(id="download-box") as box:
                    box.border_title = "bonsai-tui · first run"
                    yield Label(f"Downloading {self.choice.name}", id="download-title")
                    yield Label(file_text(self.choice), id="download-file")
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
        self.set_interval(REFRESH_S, self._show_latest)
        self.start_download()

    def _show_actions(self, visible: bool) -> None:
        self.stopped = visible
        for widget in ("#download-actions", "#local-path", "#download-error"):
            self.query_one(widget).display = visible
        self.query_one(ProgressBar).display = not visible
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "cancel" and self.stopped)  # nothing to cancel: Esc leaves the footer

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
        self.latest = progress  # one reference assignment: safe across threads, and never blocks the download

    def _show_latest(self) -> None:
        progress = self.latest
        if progress is None or progress is self.shown:
            return
        self.shown = progress
        self.query_one(ProgressBar).update(total=progress.total or None, progress=progress.done)
        self.query_one("#download-transfer", Label).update(transfer_text(progress))

    def _failed(self, message: str) -> None:
        self.query_one("#download-title", Label).update(f"{self.choice.name} is not downloaded yet")
        self.shown = self.latest  # the timer must not paint over what was kept with a stale speed
        self.query_one("#download-transfer", Label).update(kept_text(self.latest))
        self.query_one("#download-error", Label).update(message)
        self._show_actions(True)
        # offline, the likeliest way on is a file already on disk: typing a path and Enter opens
        # it at once (focus once the box is displayed, else the keys would go nowhere)
        self.call_after_refresh(self.query_one("#local-path", Input).focus)

    # ---- the ways on ------------------------------------------------------------------------

    def action_cancel(self) -> None:
        self.cancel_event.set()

    @on(Button.Pressed, "#retry")
    def _retry(self) -> None:
        self._show_actions(False)
        self.query_one("#download-title", Label).update(f"Downloading {self.choice.name}")
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

