"""The streaming reply's plain text (widgets/streaming_text.py): its wrapping, shown exactly as on
screen, and that a batch lays the screen out again only when the text outgrows its spare lines."""

from __future__ import annotations

import random
import time

import pytest
from textual.app import App, ComposeResult

import bonsai_tui.widgets.streaming_text as streaming_text
from bonsai_tui.widgets.streaming_text import SPARE_LINES, StreamingText, printable, wrap_line
from conftest import until

pytestmark = pytest.mark.anyio


def wrapped(text: str, width: int) -> list[str]:
    return [text[start:end] for start, end in wrap_line(text, 0, len(text), width)]


def test_words_wrap_at_spaces_and_long_words_are_cut() -> None:
    assert wrapped("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]
    assert wrapped("abcdefghijklmnop xy", 5) == ["abcde", "fghij", "klmno", "p xy"]
    assert wrapped("exactly10c next", 10) == ["exactly10c", "next"]
    assert wrapped("", 10) == [""]
    assert wrapped("日本語のテキスト", 5) == ["日本", "語の", "テキ", "スト"]  # two cells a character


def test_control_characters_never_reach_the_terminal() -> None:
    assert printable("a\x1b[2Jb\tc\r\nd\x07") == "a[2Jb    c\nd"


class OneText(App[None]):
    CSS = "StreamingText { width: 24; }"

    def compose(self) -> ComposeResult:
        yield StreamingText()


def screen_lines(widget: StreamingText) -> list[str]:
    return [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]


async def test_text_streamed_in_pieces_shows_as_if_wrapped_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming_text, "GROW_SECONDS", 0.0)
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 12))) for _ in range(60)]
    text = " ".join(w + ("\n" if i % 17 == 16 else "") for i, w in enumerate(words))
    expected = [line for paragraph in text.split("\n") for line in wrapped(paragraph, 24)]
    app = OneText()
    async with app.run_test(size=(40, 60)) as pilot:
        widget = app.query_one(StreamingText)
        position = 0
        while position < len(text):
            step = rng.randint(1, 9)
            widget.append(text[position : position + step])
            position += step
            if rng.random() < 0.3:
                await pilot.pause()
        # the height grows SPARE_LINES + 1 lines at a time: the text, then up to SPARE_LINES blank lines
        await until(pilot, lambda: len(expected) <= widget.size.height <= len(expected) + SPARE_LINES)
        shown = screen_lines(widget)
        assert shown[: len(expected)] == [line.rstrip() for line in expected]
        assert shown[len(expected) :] == [""] * (widget.size.height - len(expected))
        assert expected[:3] == ["gaeihge fjdicecb", "eijcebbfhi fg jdihhi", "aiabg ajhfdfbdjddc"]


async def test_a_batch_lays_the_screen_out_only_when_the_spare_lines_are_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming_text, "GROW_SECONDS", 0.0)
    app = OneText()
    async with app.run_test(size=(40, 10)) as pilot:
        widget = app.query_one(StreamingText)
        widget.append("first words")
        await until(pilot, lambda: screen_lines(widget) == ["first words", "", "", ""])
        widget.append(" and more")  # still one line of 24 cells: repainted, not laid out
        assert not widget._layout_required
        widget.append(" then a second line\nthird\nfourth")  # fills the three spare lines: repainted
        assert not widget._layout_required
        await until(pilot, lambda: screen_lines(widget) == ["first words and more", "then a second line", "third", "fourth"])
        widget.append("\nfifth")  # no blank line left: laid out, with three new spare lines
        assert widget._layout_required
        await until(pilot, lambda: screen_lines(widget) == ["first words and more", "then a second line", "third", "fourth", "fifth", "", "", ""])


async def test_new_lines_wait_for_the_next_grow_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming_text, "GROW_SECONDS", 0.5)
    app = OneText()
    async with app.run_test(size=(40, 10)) as pilot:
        widget = app.query_one(StreamingText)
        widget.append("one line of text")
        await until(pilot, lambda: screen_lines(widget) == ["one line of text", "", "", ""])
        widget._last_grow = time.monotonic()  # as if it had just grown
        widget.append("\ntwo\nthree\nfour\nfive")
        assert widget.size.height == 4 and widget._grow_timer is not None  # held back, not lost
        assert screen_lines(widget) == ["one line of text", "two", "three", "four"]  # the spare lines filled
        await until(pilot, lambda: screen_lines(widget) == ["one line of text", "two", "three", "four", "five", "", "", ""])
