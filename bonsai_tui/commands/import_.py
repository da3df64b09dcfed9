"""`bonsai-tui import FILE`: a JSON `messages` file (as `export --format json` writes) as a new conversation."""

from __future__ import annotations

import argparse
from pathlib import Path

from bonsai_tui.commands.history import one_line_errors
from bonsai_tui.export import ImportFormatError, from_json
from bonsai_tui.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help='a JSON file with a "messages" list')
    parser.add_argument("--title", default=None, help="the new conversation's title (default: the file's)")


@one_line_errors("import")
def run(args: argparse.Namespace) -> int:
    try:
        imported = from_json(args.file.read_text(encoding="utf-8"))
    except (ImportFormatError, UnicodeDecodeError) as error:
        raise ImportFormatError(f"{args.file}: {error}") from error
    fields = imported.as_new_conversation()
    if args.title:
        fields["title"] = args.title
    with Store() as store:
        conversation_id = store.create_conversation(**fields)
        title = store.load_conversation(conversation_id).title
    print(f"imported {len(imported.messages)} messages as conversation {conversation_id}: {title}")
    return 0
