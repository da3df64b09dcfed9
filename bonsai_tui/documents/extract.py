"""A file's text, line for line, with its headings: plain text, Markdown, reStructuredText, source
code, CSV/JSON (as text), HTML (tags stripped) and PDF (through pypdf).

Line numbers are the file's own wherever the format allows it (HTML keeps each text on the line it
was written on), so a citation "lines 12-30" can be checked in an editor; a PDF's lines are those
of its extracted text, page after page, with "page N" as the heading of each page.

A file that cannot be read as text is not an error of the whole attachment: `extract` raises
Skipped with a one-line reason ("binary file (NUL bytes)", "not UTF-8 text ...", ...), which the
caller shows as a note naming the file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

MAX_FILE_BYTES = 20 * 1024 * 1024  # larger files are almost never prose; they would swamp the index

# Suffixes that are binary whatever their first bytes say (cheap to refuse before reading).
BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .mp3 .wav .flac .ogg .mp4 .mkv .mov .avi .zip .gz"
    " .bz2 .xz .zst .7z .tar .rar .jar .whl .exe .dll .so .dylib .o .a .pyc .class .bin .gguf .safetensors"
    " .pt .npy .npz .sqlite .sqlite3 .db .docx .xlsx .pptx .odt .woff .woff2 .ttf .otf".split()
)
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown"})
RST_SUFFIXES = frozenset({".rst", ".rest"})
CODE_SUFFIXES = frozenset(
    ".py .pyi .js .mjs .ts .tsx .jsx .c .h .cc .cpp .hpp .cs .java .kt .go .rs .rb .php .swift .scala"
    " .sh .bash .zsh .lua .pl .r .jl .sql .m .hs .ml .ex .exs .dart .zig .nim".split()
)

# A definition line in most languages: its text is the heading of the code that follows.
_DEFINITION = re.compile(
    r"^\s{0,4}(?:(?:export|public|private|protected|static|async|pub|inline|virtual|abstract|final)\s+)*"
    r"(?:def|class|function|fn|func|fun|struct|enum|trait|impl|interface|module|sub|procedure|type)\s+\w"
)
_MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")
_SETEXT_UNDERLINE = re.compile(r"^(=+|-+)\s*$")


class Skipped(Exception):
    """A file that was left out of the index; str() is the one-line reason."""


@dataclass(frozen=True)
class Heading:
    level: int  # 1 = top; definitions in code are level 1, pages of a PDF too
    text: str


@dataclass
class Extracted:
    """A file's text (lines numbered from 1 by `lines[i - 1]`) and where its headings are."""

    path: Path
    kind: str  # "text", "markdown", "rst", "code", "html", "pdf"
    lines: list[str]
    headings: dict[int, Heading] = field(default_factory=dict)  # 1-based line -> heading starting there
    content_hash: str = ""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix == ".pdf":
        return "pdf"
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in RST_SUFFIXES:
        return "rst"
    if suffix in CODE_SUFFIXES:
        return "code"
    return "text"


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_bytes(path: Path) -> bytes:
    """The file's bytes, or Skipped with the reason it cannot be used."""
    if path.suffix.lower() in BINARY_SUFFIXES:
        raise Skipped(f"binary file type ({path.suffix.lower()})")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise Skipped(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB ({size / 1e6:.0f} MB)")
        data = path.read_bytes()
    except OSError as error:
        raise Skipped(f"cannot be read ({error.strerror or error})") from error
    if not data.strip():
        raise Skipped("empty file")
    return data


def extract(path: Path, data: bytes | None = None) -> Extracted:
    """The text of `path` (whose bytes may be given, already read); Skipped when it has none."""
    path = Path(path)
    if data is None:
        data = read_bytes(path)
    kind = kind_of(path)
    if kind == "pdf":
        lines, headings = _pdf_lines(data)
    else:
        text = _decode(data)
        lines = text.split("\n")
        if kind == "html":
            lines, headings = _html_lines(text)
        elif kind == "markdown":
            headings = _markdown_headings(lines)
        elif kind == "rst":
            headings = _rst_headings(lines)
        elif kind == "code":
            headings = _code_headings(lines)
        else:
            headings = {}
    if not any(line.strip() for line in lines):
        raise Skipped("no text in it" if kind != "pdf" else "PDF without a text layer (scanned pages?)")
    return Extracted(path, kind, lines, headings, content_hash(data))


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise Skipped("binary file (NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Skipped(f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ---- headings of text formats ------------------------------------------------------------------


def _markdown_headings(lines: list[str]) -> dict[int, Heading]:
    headings: dict[int, Heading] = {}
    fenced = False
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            continue
        match = _MARKDOWN_HEADING.match(line)
        if match:
            headings[number] = Heading(len(match.group(1)), match.group(2))
        elif number > 1 and _SETEXT_UNDERLINE.match(line) and lines[number - 2].strip() and number - 1 not in headings:
            headings[number - 1] = Heading(1 if line.startswith("=") else 2, lines[number - 2].strip())
    return headings


def _rst_headings(lines: list[str]) -> dict[int, Heading]:
    """Titles underlined (and maybe overlined) with punctuation; levels in order of first use."""
    headings: dict[int, Heading] = {}
    levels: list[str] = []
    for number in range(2, len(lines) + 1):
        underline, title = lines[number - 1], lines[number - 2]
        match = _RST_UNDERLINE.match(underline)
        if not match or not title.strip() or _RST_UNDERLINE.match(title) or len(underline.rstrip()) < len(title.rstrip()):
            continue
        overlined = number > 2 and lines[number - 3].rstrip() == underline.rstrip()
        style = ("over" if overlined else "") + match.group(1)
        if style not in levels:
            levels.append(style)
        headings[number - 2 if overlined else number - 1] = Heading(levels.index(style) + 1, title.strip())
    return headings


def _code_headings(lines: list[str]) -> dict[int, Heading]:
    """Definitions; a method (indented under its class) is one level below it."""
    return {
        number: Heading(1 + _indent(line) // 4, line.strip().rstrip(":{").strip())
        for number, line in enumerate(lines, start=1)
        if _DEFINITION.match(line)
    }


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


# ---- HTML ---------------------------------------------------------------------------------------


class _TextByLine(HTMLParser):
    """Collects the visible text of an HTML page on the source line it starts on."""

    INVISIBLE = frozenset({"script", "style", "head", "template", "noscript", "svg"})
    HEADINGS = {f"h{level}": level for level in range(1, 7)}

    def __init__(self, line_count: int) -> None:
        super().__init__(convert_charrefs=True)
        self.lines = [""] * line_count
        self.headings: dict[int, Heading] = {}
        self._hidden = 0
        self._heading: tuple[int, int, list[str]] | None = None  # level, line, texts

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.INVISIBLE:
            self._hidden += 1
        elif tag in self.HEADINGS:
            self._heading = (self.HEADINGS[tag], self.getpos()[0], [])

    def handle_endtag(self, tag: str) -> None:
        if tag in self.INVISIBLE:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self.HEADINGS and self._heading:
            level, line, texts = self._heading
            title = " ".join(" ".join(texts).split())
            if title:
                self.headings[line] = Heading(level, title)
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        line = self.getpos()[0]
        for offset, part in enumerate(data.split("\n")):
            if line + offset - 1 < len(self.lines) and part.strip():
                index = line + offset - 1
                self.lines[index] = (self.lines[index] + " " + part.strip()).strip()
        if self._heading:
            self._heading[2].append(data)


def _html_lines(text: str) -> tuple[list[str], dict[int, Heading]]:
    lines = text.split("\n")
    parser = _TextByLine(len(lines))
    parser.feed(text)
    parser.close()
    return parser.lines, parser.headings


# ---- PDF ----------------------------------------------------------------------------------------


def _pdf_lines(data: bytes) -> tuple[list[str], dict[int, Heading]]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise Skipped("encrypted PDF")
        lines: list[str] = []
        headings: dict[int, Heading] = {}
        for page_number, page in enumerate(reader.pages, start=1):
            page_lines = [line.rstrip() for line in (page.extract_text() or "").split("\n")]
            if not any(page_lines):
                continue
            if lines:
                lines.append("")  # a paragraph break between pages
            headings[len(lines) + 1] = Heading(1, f"page {page_number}")
            lines.extend(page_lines)
    except Skipped:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as error:
        raise Skipped(f"unreadable PDF ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    return lines, headings
