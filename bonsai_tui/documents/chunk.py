"""A document's text cut into passages of about 200-400 tokens, on the boundaries its author made.

The text is first read as blocks: runs of non-blank lines, a heading (or a definition in code)
always starting a new block. Blocks are then packed in order into passages: a passage is closed
before a block that would take it past MAX_TOKENS, and before a heading once it holds MIN_TOKENS,
so sections stay whole when they fit and small ones share a passage. Neighbouring passages of one
section overlap by one short paragraph (at most OVERLAP_TOKENS), so a sentence that answers a
question is never only half in a passage. A block larger than MAX_TOKENS is cut between lines
(and a huge single line, between characters).

Token counts are estimated (4 characters a token, English and code alike): indexing needs no
model, and retrieval counts the real tokens of what it puts in the prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from bonsai_tui.documents.extract import Extracted, Heading

MIN_TOKENS = 200
MAX_TOKENS = 400
OVERLAP_TOKENS = 60
CHARS_PER_TOKEN = 4
HEADING_SEPARATOR = " > "


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True)
class Passage:
    start_line: int  # 1-based, inclusive: the file's own lines
    end_line: int
    heading: str  # the headings it sits under, "Install > Linux" ("" before the first one)
    text: str


@dataclass(frozen=True)
class _Block:
    start_line: int
    end_line: int
    heading: str  # the heading path in effect at its first line (its own heading included)
    text: str
    opens_section: bool  # it starts with a heading or a definition
    tokens: int


def chunk(document: Extracted, min_tokens: int = MIN_TOKENS, max_tokens: int = MAX_TOKENS) -> list[Passage]:
    passages: list[Passage] = []
    current: list[_Block] = []
    for block in _sized(_blocks(document), max_tokens):
        if current:
            size = sum(b.tokens for b in current)
            if size + block.tokens > max_tokens or (block.opens_section and size >= min_tokens):
                carried = _carried_over(current, block, max_tokens)
                if current:
                    passages.append(_passage(current))
                current = carried
        current.append(block)
    if current:
        passages.append(_passage(current))
    return passages


def _carried_over(current: list[_Block], following: _Block, max_tokens: int) -> list[_Block]:
    """What the next passage starts with: a heading left dangling at the end of this one (moved),
    or this one's short last paragraph (repeated) when the section goes on."""
    last = current[-1]
    if len(current) > 1 and last.opens_section and last.start_line == last.end_line:
        current.pop()
        return [last]
    if (
        len(current) > 1
        and not following.opens_section
        and last.tokens <= OVERLAP_TOKENS
        and last.tokens + following.tokens <= max_tokens
    ):
        return [last]
    return []


def _passage(blocks: list[_Block]) -> Passage:
    """The blocks' text with the blank lines between them (none between pieces of one long line)."""
    parts = [blocks[0].text]
    for previous, block in zip(blocks, blocks[1:]):
        parts.append("\n" * (block.start_line - previous.end_line) + block.text)
    return Passage(blocks[0].start_line, blocks[-1].end_line, blocks[0].heading, "".join(parts))


def _blocks(document: Extracted) -> Iterator[_Block]:
    lines, headings = document.lines, document.headings
    trail: list[Heading] = []
    start: int | None = None
    heading = ""
    for number in range(1, len(lines) + 2):  # one past the end closes the last block
        line = lines[number - 1] if number <= len(lines) else ""
        new_heading = headings.get(number)
        if start is not None and (not line.strip() or new_heading):
            yield _block(lines, start, number - 1, heading, start in headings)
            start = None
        if new_heading:
            trail = [h for h in trail if h.level < new_heading.level] + [new_heading]
        if line.strip() and start is None:
            start = number
            heading = HEADING_SEPARATOR.join(h.text for h in trail)


def _block(lines: list[str], start: int, end: int, heading: str, opens_section: bool) -> _Block:
    text = "\n".join(lines[start - 1 : end])
    return _Block(start, end, heading, text, opens_section, estimate_tokens(text))


def _sized(blocks: Iterator[_Block], max_tokens: int) -> Iterator[_Block]:
    """Blocks no larger than max_tokens: big ones cut between lines, huge lines between characters."""
    for block in blocks:
        if block.tokens <= max_tokens:
            yield block
            continue
        for index, (start, end, text) in enumerate(_pieces(block, max_tokens)):
            yield _Block(start, end, block.heading, text, block.opens_section and index == 0, estimate_tokens(text))


def _pieces(block: _Block, max_tokens: int) -> Iterator[tuple[int, int, str]]:
    max_chars = max_tokens * CHARS_PER_TOKEN
    piece: list[str] = []
    piece_start = block.start_line
    for number, line in enumerate(block.text.split("\n"), start=block.start_line):
        if piece and estimate_tokens("\n".join(piece + [line])) > max_tokens:
            yield piece_start, number - 1, "\n".join(piece)
            piece = []
        if len(line) > max_chars:
            for offset in range(0, len(line), max_chars):
                yield number, number, line[offset : offset + max_chars]
            continue
        if not piece:
            piece_start = number
        piece.append(line)
    if piece:
        yield piece_start, block.end_line, "\n".join(piece)
