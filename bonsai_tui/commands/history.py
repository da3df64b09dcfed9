"""`bonsai-tui history`: the saved conversations, newest first (or those matching --search)."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable

from bonsai_tui.export import ImportFormatError
from bonsai_tui.store import Store, StoreError

Run = Callable[[argparse.Namespace], int]


def one_line_errors(command: str) -> Callable[[Run], Run]:
    """Turn the history's expected failures (store, file, format) into one line and exit code 2."""

    def decorate(run: Run) -> Run:
        @functools.wraps(run)
        def reporting(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except (StoreError, ImportFormatError, OSError) as error:
                print(f"bonsai-tui {command}: {_one_line(error)}", file=sys.stderr)
                return 2

        return reporting

    return decorate


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--search", metavar="TEXT", help="only conversations whose title or messages hold TEXT")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows")


@one_line_errors("history")
def run(args: argparse.Namespace) -> int:
    with Store() as store:
        rows = store.search(args.search, limit=args.limit or -1) if args.search else store.list_conversations(args.limit)
    if not rows:
        print("No matching conversations." if args.search else "No conversations yet.")
        return 0
    print(f"{'ID':>5}  {'UPDATED':<16}  {'MSGS':>5}  TITLE")
    for row in rows:
        updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.updated))
        print(f"{row.id:>5}  {updated:<16}  {row.message_count:>5}  {row.title or '(untitled)'}")
    return 0
