"""Shown while the model opens and its kernels compile, so the app never looks frozen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Center, Middle, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar

import engine
from bonsai_tui.crash_log import log_crash
from bonsai_tui.widgets.prompt_input import PromptInput
from engine.errors import EngineError
from engine.threads import on_engine_thread

STEPS = (
    "Opening the model file",
    "Preparing the decode kernels (compiled on the first run only)",
    "Preparing the prefill kernels",
)


class _LoadFailed(Exception):
    """The load or the warm-up failed; `message` is the one line to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class LoadedModel:
    model: engine.Model
    draft: str  # what the user typed while waiting
    send_draft: bool  # they already pressed Enter: send it as soon as the chat opens


class LoadingScreen(Screen[LoadedModel]):
    """Loads on a thread worker and dismisses with the Model; on failure shows why and stays.

    The message box is already there, so nobody has to wait for the model to start typing.
    """

    def __init__(self, path: Path, threads: int | None, kv_cache: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.threads = threads
        self.kv_cache = kv_cache
        self.send_draft = False

    def compose(self) -> ComposeResult:
        with Middle():
            with Center():
                with Vertical(id="loading-box") as box:
                    box.border_title = "bonsai-tui"
                    yield Label(f"Loading {self.path.name}", id="loading-title")
                    yield ProgressBar(total=len(STEPS), show_eta=False, id="loading-progress")
                    yield Label(STEPS[0] + "…", id="loading-step")
        yield PromptInput(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PromptInput).focus()
        self.load()

    @on(PromptInput.Submitted)
    def _queue_message(self) -> None:
        self.send_draft = True
        self.notify("Your message will be sent as soon as the model is ready.")

    def _finish(self, model: engine.Model) -> None:
        self.dismiss(LoadedModel(model, self.query_one(PromptInput).text, self.send_draft))

    def _show_step(self, index: int) -> None:
        self.query_one(ProgressBar).progress = index
        self.query_one("#loading-step", Label).update(STEPS[index] + "…")

    def _show_error(self, message: str) -> None:
        self.query_one(ProgressBar).display = False
        step = self.query_one("#loading-step", Label)
        step.add_class("error")
        step.update(f"Could not load the model: {message}\nPress Ctrl+Q to quit.")

    @work(thread=True, exit_on_error=False)
    def load(self) -> None:
        try:
            # on the engine thread, where the replies will run too (see engine/threads.py)
            on_engine_thread(self._load_and_warm_up)
        except _LoadFailed as failed:
            self.app.call_from_thread(self._show_error, failed.message)

    def _load_and_warm_up(self) -> None:
        if not self.is_attached:  # closed while this load waited for the engine thread
            return
        model = None
        try:
            model = engine.load(self.path, threads=self.threads, kv_cache=self.kv_cache)
            if not self.is_attached:  # closed while loading: no warm-up for nobody
                model.close()
                return
            # one token, then two: Numba compiles (or loads from its cache) the decode and the prefill
            # kernels now, not on the user's first message. Two rows take the int8 path's prefill GEMM
            # (lanes.gemm pads any batch to its 8-row tile) and the batch attention; with exact=True
            # a batch under 25 rows goes row by row, so there the tiled GEMM waits for a long prompt.
            self.app.call_from_thread(self._show_step, 1)
            model.forward([0], model.new_cache(1), 0)
            self.app.call_from_thread(self._show_step, 2)
            model.forward([0, 1], model.new_cache(2), 0)
        except Exception as error:
            if model is not None:
                model.close()
            known = isinstance(error, (EngineError, OSError))
            message = str(error) if known else f"unexpected error: {error} (details in {log_crash()})"
            raise _LoadFailed(message) from error
        self.app.call_from_thread(self._finish, model)
