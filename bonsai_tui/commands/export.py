"""`bonsai-tui export ID`: one saved conversation as Markdown or JSON, to stdout or a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bonsai_tui.commands.history import one_line_errors
from bonsai_tui.export import to_json, to_markdown
from bonsai_tui.store import Store

FORMATS = {"md": to_markdown, "json": to_json}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="the conversation's ID (see `bonsai-tui history`)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="md", help="md (to read) or json (to reuse)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="write to this file instead of stdout")
    parser.add_argument("--force", action="store_true", help="overwrite the output file if it exists")


@one_line_errors("export")
def run(args: argparse.Namespace) -> int:
    with Store() as store:
        text = FORMATS[args.format](store.load_conversation(args.id))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w" if args.force else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        print(f"bonsai-tui export: {args.output} exists (add --force to overwrite it)", file=sys.stderr)
        return 2
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
