"""Plain text that only grows, for a reply while it streams: each batch costs what it adds.

A `Static` re-wraps and re-renders its whole text on every update, and asks for a layout of the
screen, which walks every widget of the conversation: a batch cost more the longer the reply and
the longer the chat, and that CPU was taken from the engine's threads (2 cores). Here the text is
wrapped once per line (only the last line is wrapped again when text arrives), rendered a line at a
time (Textual's line API: only the lines on screen), and a batch asks for a layout only when the
text needs more lines than the widget has; otherwise it repaints just the lines it changed. A
layout of the screen (two passes over every widget, as Textual echoes the size change, and a
repaint of the whole scrolled view) is the one cost that grows with the conversation, so:

- the widget keeps SPARE_LINES blank lines under the text, which the next lines fill by a repaint:
  one layout per SPARE_LINES + 1 lines instead of one per line (UI thread busy 8.5 % -> 4.3 % of
  a 50 tok/s reply at 80x24, benchmarks/ui_cost.py);
- new lines past those are shown at most GROW_SECONDS apart: a code block of short lines arrives
  in a few steps a second instead of one layout per batch.
"""

from __future__ import annotations

import time
import unicodedata

from rich.cells import cell_len
from rich.segment import Segment
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget

TAB = "    "
GROW_SECONDS = 0.25  # new lines at most this often (4 layouts a second)
SPARE_LINES = 3  # blank lines kept under the text, for the next lines to fill without a layout


def printable(text: str) -> str:
    """The text without control characters (a terminal would act on them), tabs as spaces."""
    text = text.replace("\t", TAB).replace("\r\n", "\n")
    if text.isprintable():
        return text
    return "".join(c for c in text if c == "\n" or unicodedata.category(c) != "Cc")


def wrap_line(text: str, start: int, end: int, width: int) -> list[tuple[int, int]]:
    """Greedy word wrap of text[start:end] (no newline inside) into (start, end) spans of at most
    `width` cells. A line starts where the one before it broke, so wrapping again from the start of
    any line gives the same lines from there on: appending text only changes the last one."""
    spans: list[tuple[int, int]] = []
    line_start = start
    while True:
        while line_start < end and text[line_start] == " " and spans:  # a break eats its spaces
            line_start += 1
        cells, position, last_break = 0, line_start, -1
        while position < end:
            char = text[position]
            size = cell_len(char)
            if cells + size > width:
                break
            if char == " ":
                last_break = position
            cells += size
            position += 1
        if position >= end:
            spans.append((line_start, end))
            return spans
        if text[position] == " ":
            spans.append((line_start, position))  # the word ended exactly at the edge
            line_start = position
        elif last_break > line_start:
            spans.append((line_start, last_break))  # the word that did not fit starts the next line
            line_start = last_break
        else:
            spans.append((line_start, max(position, line_start + 1)))  # a word wider than the line
            line_start = max(position, line_start + 1)


class StreamingText(Widget):
    """Append-only plain text, word-wrapped to the widget's width."""

    DEFAULT_CSS = """
    StreamingText {
        height: auto;
    }
    """

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.text = ""
        self._width = 0  # the width the lines are wrapped at (0: not yet)
        self._lines: list[tuple[int, int]] = []  # (start, end) into self.text, one per screen line
        self._height = 0  # the widget's height as the layout knows it: the lines, then spare blank ones
        self._last_grow = 0.0
        self._grow_timer: Timer | None = None

    def clear(self) -> None:
        self.text = ""
        self._lines = []
        self._grow()

    def append(self, text: str) -> None:
        text = printable(text)
        if not text:
            return
        self.text += text
        if not self._width:
            self._grow()
            return
        first = self._wrap_tail()
        if first < self._height:
            self.refresh(Region(0, first, self._width, min(len(self._lines), self._height) - first))
        if len(self._lines) > self._height:  # no blank line left to fill: what is below moves down
            wait = self._last_grow + GROW_SECONDS - time.monotonic()
            if wait <= 0:
                self._grow()
            elif self._grow_timer is None:
                self._grow_timer = self.set_timer(wait, self._grow)

    def _grow(self) -> None:
        """Show every line so far and SPARE_LINES blank ones: the widget's height changes, so the
        screen is laid out again."""
        if self._grow_timer is not None:
            self._grow_timer.stop()
            self._grow_timer = None
        self._last_grow = time.monotonic()
        self._height = len(self._lines) + SPARE_LINES
        self.refresh(layout=True)

    def _wrap_tail(self) -> int:
        """Wrap again from the start of the last line; returns the index of the first line redone."""
        first = max(0, len(self._lines) - 1)
        start = self._lines[first][0] if self._lines else 0
        del self._lines[first:]
        text = self.text
        while True:
            newline = text.find("\n", start)
            end = len(text) if newline < 0 else newline
            self._lines += wrap_line(text, start, end, self._width)
            if newline < 0:
                return first
            start = newline + 1

    def _wrap_all(self, width: int) -> None:
        self._width = max(1, width)
        self._lines = []
        self._wrap_tail()
        self._height = len(self._lines) + SPARE_LINES

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return max((cell_len(line) for line in self.text.split("\n")), default=0)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width != self._width:
            self._wrap_all(width)
        return self._height

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width <= 0:
            return Strip.blank(0)
        if width != self._width:
            self._wrap_all(width)
        style = self.rich_style
        if y >= min(self._height, len(self._lines)):
            return Strip.blank(width, style)
        start, end = self._lines[y]
        return Strip([Segment(self.text[start:end], style)]).extend_cell_length(width, style).crop(0, width)
