"""Documents in the chat, through Textual's Pilot: attach, ask, see the sources under the reply,
open one, remove the attachment."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Static

from bonsai_tui.screens.file_picker import FilePickerScreen
from bonsai_tui.screens.passage import PassageScreen
from bonsai_tui.store import Store
from bonsai_tui.widgets.attachments import AttachmentChip
from bonsai_tui.widgets.sources import NOTHING_FOUND_LABEL, SourceButton, SourceList
from test_app import make_app, open_chat, wait_for
from test_document_index import HANDBOOK, write_handbook

pytestmark = pytest.mark.anyio


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_handbook(tmp_path / "docs")


async def enter(pilot, screen, text: str) -> None:
    """Put `text` in the message box and press Enter (typing it key by key is slow)."""
    screen.prompt.text = text
    await pilot.press("enter")


async def ask(pilot, screen, text: str):
    await enter(pilot, screen, text)
    await wait_for(pilot, lambda: screen.chat_messages and screen.chat_messages[-1].role == "assistant")
    await wait_for(pilot, lambda: not screen.generator.busy)
    return screen.chat_messages[-1]


def chips(screen) -> list[str]:
    return [str(chip.label) for chip in screen.query(AttachmentChip)]


async def test_attach_ask_see_the_sources_open_one_and_remove_the_attachment(tiny_model_path: Path, folder: Path) -> None:
    app = make_app(tiny_model_path, max_tokens=3)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_chat(pilot)
        await enter(pilot, screen, f"/attach {folder}")
        await wait_for(pilot, lambda: bool(chips(screen)))
        assert chips(screen) == ["docs/ (4 files, 1 skipped) ✕"]
        assert screen.prompt.text == ""

        reply = await ask(pilot, screen, "How many days of annual leave do I get?")
        question = screen.chat_messages[-2]
        assert question.context is not None and "<passage source=" in question.context
        labels = [str(button.label) for button in reply.query(SourceButton)]
        assert labels == [f"{folder}/handbook/leave.md:1-10"]
        sent = screen.engine_messages()[-2]["content"]
        assert sent.startswith("<documents>\n") and sent.endswith("\n\nQuestion: How many days of annual leave do I get?")

        await pilot.click(SourceButton)
        await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen))
        passage = str(app.screen.query_one("#passage-text", Static).render())
        assert passage == HANDBOOK["handbook/leave.md"].rstrip("\n")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)

        await pilot.click(AttachmentChip)
        await wait_for(pilot, lambda: not chips(screen))
        later = await ask(pilot, screen, "How many days of annual leave do I get?")
        assert not later.query(SourceList) and screen.chat_messages[-2].context is None

    with Store() as store:
        (summary,) = store.list_conversations()
        messages = store.load_conversation(summary.id).messages
    assert [(m.role, [s["start_line"] for s in m.sources], m.context is not None) for m in messages] == [
        ("user", [1], True), ("assistant", [], False), ("user", [], False), ("assistant", [], False),
    ]


async def test_ctrl_o_picks_a_file_and_a_question_outside_it_says_nothing_found(tiny_model_path: Path, folder: Path) -> None:
    app = make_app(tiny_model_path, max_tokens=2)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, FilePickerScreen))
        path_box = app.screen.query_one("#picker-path", Input)
        path_box.focus()
        path_box.value = str(folder / "site/security.html")
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(chips(screen)))
        assert chips(screen) == ["security.html (1 file) ✕"]
        reply = await ask(pilot, screen, "zebra migration routes")
        assert [str(label.render()) for label in reply.query(SourceList).first().query("Label")] == [NOTHING_FOUND_LABEL]
