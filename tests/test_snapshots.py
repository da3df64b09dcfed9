"""Screenshots of the chat, the sampling panel and the help screen (pytest-textual-snapshot).

The conversation is loaded rather than generated, so the pictures hold no timings; update them
with `pytest tests/test_snapshots.py --snapshot-update` after a deliberate change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from bonsai_tui.app import BonsaiApp, ChatOptions
from bonsai_tui.screens.chat import ChatScreen
from bonsai_tui.generation_settings import GenerationSettings
from bonsai_tui.screens.help import HelpScreen
from conftest import until
from engine.sampling import SamplingParams

PARAMS = SamplingParams(temperature=0.0, seed=0)
CONVERSATION = [
    {"role": "user", "content": "How do I reverse a list in Python?"},
    {
        "role": "assistant",
        "content": (
            "<think>\nThe user wants list reversal; slicing is the shortest answer.\n</think>\n\n"
            "Use slicing, which returns a **new** list:\n\n```python\nitems = [1, 2, 3]\n"
            "print(items[::-1])  # [3, 2, 1]\n```\n\nOr `items.reverse()` to reverse in place."
        ),
        "stats": {
            "prompt_tokens": 31, "cached_tokens": 0, "generated_tokens": 48,
            "prefill_s": 0.25, "decode_s": 2.35, "ttft_s": 0.26,
        },
        "stop_reason": "eos",
    },
    {"role": "user", "content": "Thanks! And a tuple?"},
]


@pytest.fixture(autouse=True)
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONSAI_TUI_HOME", str(tmp_path / "home"))


def make_app(model_path: Path) -> BonsaiApp:
    return BonsaiApp(ChatOptions(model_path, threads=1, choose_params=lambda _: PARAMS))


async def show_conversation(pilot: Pilot) -> None:
    def chat_ready() -> bool:
        screen = pilot.app.screen
        return isinstance(screen, ChatScreen) and bool(screen.query("#prompt")) and screen.prompt.has_focus

    await until(pilot, chat_ready)  # raises if the chat never opens: no picture of a loading screen
    screen = pilot.app.screen
    screen.prompt.cursor_blink = False  # a blinking cursor would make the picture depend on the moment
    settings = GenerationSettings(PARAMS, max_tokens=256, system_prompt="You are terse.", preset="Custom")
    await screen.load_conversation(CONVERSATION, settings)
    await until(pilot, lambda: len(screen.chat_messages) == len(CONVERSATION))
    await pilot.wait_for_scheduled_animations()  # then the picture: the scroll to the end has run


def test_chat_screen(snap_compare, tiny_model_path: Path) -> None:
    assert snap_compare(make_app(tiny_model_path), terminal_size=(80, 24), run_before=show_conversation)


def test_sampling_panel(snap_compare, tiny_model_path: Path) -> None:
    async def with_preset(pilot: Pilot) -> None:
        await show_conversation(pilot)
        await pilot.click("#preset-creative")
        await pilot.click("#top_p")
        await pilot.press("end", "backspace", "backspace", "backspace", "backspace", "2")  # invalid: an error shows

    assert snap_compare(make_app(tiny_model_path), terminal_size=(140, 40), run_before=with_preset)


def test_help_screen(snap_compare, tiny_model_path: Path) -> None:
    async def open_help(pilot: Pilot) -> None:
        await show_conversation(pilot)
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))

    assert snap_compare(make_app(tiny_model_path), terminal_size=(100, 40), run_before=open_help)
