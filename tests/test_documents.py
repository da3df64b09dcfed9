"""Documents: every format read line for line with its headings, unusable files skipped with a
reason, and the passages cut on the author's boundaries with exact line ranges."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from bonsai_tui.documents.chunk import chunk
from bonsai_tui.documents.extract import Heading, Skipped, extract


def write_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A real PDF with a text layer (Helvetica, one line per string), written with pypdf."""
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }))
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        stream.set_data(("BT /F1 12 Tf 72 720 Td " + " 0 -16 Td ".join(f"({line}) Tj" for line in lines) + " ET").encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    path.write_bytes(buffer.getvalue())
    return path


def test_markdown_headings_atx_and_setext_but_not_in_code_fences(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("Guide\n=====\n\nIntro.\n\n## Install\n\n```sh\n# a shell comment\n```\n\nUsage\n-----\nRun it.\n")
    document = extract(path)
    assert document.kind == "markdown"
    assert document.headings == {1: Heading(1, "Guide"), 6: Heading(2, "Install"), 12: Heading(2, "Usage")}


def test_rst_levels_follow_the_order_underline_styles_are_first_used(tmp_path: Path) -> None:
    path = tmp_path / "manual.rst"
    path.write_text("=====\nTitle\n=====\n\nText.\n\nPart\n----\n\nMore.\n\nSub\n~~~\n\nOther part\n----------\n")
    assert extract(path).headings == {
        1: Heading(1, "Title"), 7: Heading(2, "Part"), 12: Heading(3, "Sub"), 15: Heading(2, "Other part"),
    }


def test_code_definitions_are_headings_methods_one_level_below_their_class(tmp_path: Path) -> None:
    path = tmp_path / "shapes.py"
    path.write_text("import math\n\n\nclass Circle:\n    def area(self):\n        return math.pi\n\n\ndef unit():\n    return Circle()\n")
    assert extract(path).headings == {4: Heading(1, "class Circle"), 5: Heading(2, "def area(self)"), 9: Heading(1, "def unit()")}


def test_html_text_stays_on_its_source_lines_without_tags_scripts_or_styles(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>T</title><style>p {color: red}</style></head>\n"
        "<body><h1>Refund &amp; returns</h1>\n"
        "<script>alert('x')</script>\n"
        "<p>Items may be returned\nwithin <b>30 days</b>.</p>\n"
        "</body></html>\n"
    )
    document = extract(path)
    assert document.lines == ["", "Refund & returns", "", "Items may be returned", "within 30 days .", "", ""]
    assert document.headings == {2: Heading(1, "Refund & returns")}


def test_pdf_text_is_read_page_after_page_with_page_headings(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "report.pdf", [["Quarterly report", "Revenue grew by 12 percent."], ["Outlook is stable."]])
    document = extract(path)
    assert document.kind == "pdf"
    assert document.lines == ["Quarterly report", "Revenue grew by 12 percent.", "", "Outlook is stable."]
    assert document.headings == {1: Heading(1, "page 1"), 4: Heading(1, "page 2")}


def test_csv_json_and_plain_text_are_read_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "prices.csv").write_text("item,price\r\ntea,3\r\n")
    (tmp_path / "config.json").write_text('{"threads": 4}')
    assert extract(tmp_path / "prices.csv").lines == ["item,price", "tea,3", ""]
    assert extract(tmp_path / "config.json").lines == ['{"threads": 4}']


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("photo.png", b"\x89PNG\r\n", "binary file type (.png)"),
        ("blob.dat", b"abc\x00def", "binary file (NUL bytes)"),
        ("latin.txt", b"caf\xe9 au lait", "not UTF-8 text (byte 0xe9 at offset 3)"),
        ("empty.md", b"  \n\n", "empty file"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "unreadable PDF"),
        ("blank.html", b"<html><script>x()</script></html>", "no text in it"),
    ],
)
def test_unusable_files_are_skipped_with_the_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(Skipped) as skipped:
        extract(path)
    assert str(skipped.value).startswith(reason)


def test_a_pdf_without_a_text_layer_is_skipped_as_probably_scanned(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "scan.pdf", [[]])
    with pytest.raises(Skipped, match=r"^PDF without a text layer \(scanned pages\?\)$"):
        extract(path)


def paragraph(word: str, lines: int) -> str:
    """`lines` lines of 40 characters (10 estimated tokens each)."""
    return "\n".join((f"{word} " * 40)[:39] + "." for _ in range(lines))


def test_sections_are_kept_whole_and_small_ones_share_a_passage(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("\n\n".join([
        "# Alpha", paragraph("alpha", 3),       # lines 1, 3-5
        "## Beta", paragraph("beta", 3),        # lines 7, 9-11
        "## Gamma", paragraph("gamma", 3),      # lines 13, 15-17
    ]) + "\n")
    passages = chunk(extract(path), min_tokens=50, max_tokens=100)
    # Alpha + Beta reach 50 tokens, so Gamma's heading closes the passage
    assert [(p.start_line, p.end_line, p.heading) for p in passages] == [(1, 11, "Alpha"), (13, 17, "Alpha > Gamma")]
    assert passages[1].text == "## Gamma\n\n" + paragraph("gamma", 3)


def test_a_long_section_is_cut_between_paragraphs_with_one_short_paragraph_of_overlap(tmp_path: Path) -> None:
    path = tmp_path / "long.md"
    blocks = ["# Long", paragraph("one", 4), paragraph("two", 2), paragraph("three", 7), paragraph("four", 4)]
    path.write_text("\n\n".join(blocks) + "\n")
    # lines: 1 heading, 3-6 one (41 tokens), 8-9 two (21), 11-17 three (72), 19-22 four (41);
    # "two" is short enough to be repeated, "three" (over 60 tokens) is not
    passages = chunk(extract(path), min_tokens=50, max_tokens=100)
    assert [(p.start_line, p.end_line, p.heading) for p in passages] == [(1, 9, "Long"), (8, 17, "Long"), (19, 22, "Long")]
    assert passages[1].text == paragraph("two", 2) + "\n\n" + paragraph("three", 7)


def test_a_heading_never_ends_a_passage_without_its_text(tmp_path: Path) -> None:
    path = tmp_path / "dangling.md"
    path.write_text("\n\n".join(["# A", paragraph("a", 2), "## B", paragraph("b", 8)]) + "\n")
    passages = chunk(extract(path), min_tokens=50, max_tokens=90)
    assert [(p.start_line, p.end_line, p.heading) for p in passages] == [(1, 4, "A"), (6, 15, "A > B")]


def test_oversized_paragraphs_and_lines_are_cut_with_exact_line_ranges(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_text(paragraph("row", 12) + "\n\n" + "x" * 500 + "\n")
    passages = chunk(extract(path), min_tokens=50, max_tokens=50)
    assert [(p.start_line, p.end_line) for p in passages] == [(1, 4), (5, 8), (9, 12), (14, 14), (14, 14), (14, 14)]
    assert "".join(p.text for p in passages[3:]) == "x" * 500


def test_code_is_cut_at_definitions(tmp_path: Path) -> None:
    path = tmp_path / "tools.py"
    body = "\n".join(f"    value_{i} = compute_something({i}, more_arguments)" for i in range(6))  # 6 x 13 tokens
    path.write_text(f"def first():\n{body}\n\n\ndef second():\n{body}\n\n\ndef third():\n{body}\n")
    passages = chunk(extract(path), min_tokens=60, max_tokens=200)
    assert [(p.start_line, p.end_line, p.heading) for p in passages] == [
        (1, 7, "def first()"), (10, 16, "def second()"), (19, 25, "def third()"),
    ]
