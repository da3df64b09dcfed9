"""The first-run screen with Pilot: download from the (fake) hub into the chat, or a way on."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Button, Input, Label, OptionList

from bonsai_tui import hub
from bonsai_tui.app import BonsaiApp, ChatOptions
from bonsai_tui.demo import demo_model_path
from bonsai_tui.screens.chat import ChatScreen
from bonsai_tui.screens.confirm import ConfirmScreen
from bonsai_tui.screens.download import DownloadScreen
from bonsai_tui.screens.models import ModelsScreen
from conftest import closed_port_url, point_at, until
from fakehub import FakeHub

pytestmark = pytest.mark.anyio
KEY = f"{hub.DEFAULT_MODEL.repo}/{hub.DEFAULT_MODEL.filename}"


def error_text(app: BonsaiApp) -> str:
    if not isinstance(app.screen, DownloadScreen):
        return ""
    return str(app.screen.query_one("#download-error", Label).render())


def chat_is_open(app: BonsaiApp) -> bool:
    """The chat screen is up and done mounting (a test that ended while the sampling panel's
    Select was still mounting failed in Textual's own Select: its label was already gone)."""
    screen = app.screen
    if not isinstance(screen, ChatScreen) or not screen.query("#conversation") or not screen.query("#output"):
        return False
    return screen.query_one("#output").is_mounted and screen.prompt.has_focus


def first_run_app() -> BonsaiApp:
    return BonsaiApp(ChatOptions(model_path=None, model_choice=hub.DEFAULT_MODEL, threads=1))


async def test_download_then_chat(hf_cache: Path, monkeypatch, tiny_model_path: Path) -> None:
    with FakeHub({KEY: tiny_model_path.read_bytes()}) as server:
        server.behaviour.hold_at = 1 << 16  # the transfer waits there until the screen has been seen
        point_at(monkeypatch, server.url)
        app = first_run_app()
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DownloadScreen))
            title = str(app.screen.query_one("#download-title", Label).render())
            assert title == "Downloading Bonsai 1.7B"
            server.behaviour.release.set()
            await until(pilot, lambda: chat_is_open(app))
    assert hub.cached_path(hub.DEFAULT_MODEL).read_bytes() == tiny_model_path.read_bytes()


async def test_no_network_offers_retry_local_file_and_demo(hf_cache: Path, monkeypatch, tiny_model_path: Path) -> None:
    point_at(monkeypatch, closed_port_url())
    app = first_run_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: error_text(app) != "")
        assert app.screen.query_one("#retry").display
        error = error_text(app)
        assert error.startswith("cannot reach the hub at http://127.0.0.1:")
        assert app.screen.query_one("#demo", Button).label.plain == "Try the demo model"
        path_input = app.screen.query_one("#local-path", Input)
        await until(pilot, lambda: path_input.has_focus)  # typed keys go to the path box at once
        await pilot.press(*"/nowhere/model.gguf", "enter")
        await until(pilot, lambda: "no such file" in str(app.screen.query_one("#download-error", Label).render()))
        assert str(app.screen.query_one("#download-error", Label).render()) == "/nowhere/model.gguf: no such file"
        await pilot.press("ctrl+u", *str(tiny_model_path), "enter")
        await until(pilot, lambda: chat_is_open(app))
        assert app.screen.model.path == tiny_model_path


async def test_demo_model_when_offline(hf_cache: Path, monkeypatch) -> None:
    point_at(monkeypatch, closed_port_url())
    app = first_run_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: error_text(app) != "")
        app.screen.query_one("#demo", Button).press()
        await until(pilot, lambda: chat_is_open(app))
        assert "random weights" in app.screen.model.config.name


class PickerApp(App[None]):
    """Hosts the models screen alone and records what it was dismissed with."""

    def __init__(self) -> None:
        super().__init__()
        self.picked: list[hub.ModelChoice | None] = []

    def on_mount(self) -> None:
        self.push_screen(ModelsScreen(), self.picked.append)


def option_texts(app: App) -> list[str]:
    options = app.screen.query_one(OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def test_models_picker_shows_sizes_downloads_and_deletes(hf_cache: Path, monkeypatch) -> None:
    with FakeHub({KEY: b"x" * 2_000_000}) as server:
        point_at(monkeypatch, server.url)
        hub.download(hub.DEFAULT_MODEL)
    app = PickerApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelsScreen) and len(option_texts(app)) == 7)
        assert option_texts(app) == [
            "Bonsai 1.7B         2.0 MB   downloaded",
            "Bonsai 4B           572 MB   to download",
            "Bonsai 8B         1,159 MB   to download",
            "Ternary 1.7B        457 MB   to download",
            "Ternary 4B        1,070 MB   to download",
            "Ternary 8B        2,180 MB   to download",
            "Connect to a server…   an OpenAI-compatible API elsewhere",
        ]
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: "downloaded" not in option_texts(app)[0] if isinstance(app.screen, ModelsScreen) else False)
        assert hub.cached_path(hub.DEFAULT_MODEL) is None
        await pilot.press("down", "enter")
    assert app.picked == [hub.BONSAI_MODELS[1]]


async def test_switching_model_from_the_palette(hf_cache: Path, monkeypatch, tiny_model_path: Path) -> None:
    with FakeHub({KEY: tiny_model_path.read_bytes()}) as server:
        point_at(monkeypatch, server.url)
        app = BonsaiApp(ChatOptions(model_path=demo_model_path(), threads=1))
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: chat_is_open(app))
            assert "random weights" in app.screen.model.config.name and "tiny" in app.screen.model.config.name
            app.action_models()
            await until(pilot, lambda: isinstance(app.screen, ModelsScreen))
            await pilot.press("enter")  # Bonsai 1.7B: not downloaded yet, so the download screen first
            await until(pilot, lambda: chat_is_open(app) and app.screen.model.path != demo_model_path())
            assert app.screen.model.path == hub.cached_path(hub.DEFAULT_MODEL)
            assert len(app.screen_stack) == 2  # the old chat is gone
