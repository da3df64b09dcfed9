"""`--docs PATH…` for `generate`: the attached files' best passages put before the question."""

from __future__ import annotations

import argparse
import sys
from typing import Literal

import engine
from bonsai_tui.documents.index import DocumentIndexError, Progress
from bonsai_tui.documents.retrieve import DEFAULT_BUDGET_FRACTION, Retrieval
from bonsai_tui.documents.service import DocumentService
from bonsai_tui.store import Store, StoreError
from engine.session import ChatSession

PROGRESS_EVERY = 200  # files between two progress lines on a terminal


def add_documents_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("documents (chat with your files)")
    group.add_argument("--docs", nargs="+", metavar="PATH", default=None,
                       help="files or folders to answer from: their best passages go into the prompt")
    group.add_argument("--docs-budget", type=float, default=DEFAULT_BUDGET_FRACTION, metavar="FRACTION",
                       help=f"share of the context the passages may fill (default {DEFAULT_BUDGET_FRACTION:g})")


def documents_context(args: argparse.Namespace, session: ChatSession, model: engine.Model) -> Retrieval | None | Literal[False]:
    """The retrieval for --docs (None without it); False after printing a one-line error."""
    if not args.docs:
        return None
    if args.raw:
        return _error("--docs needs the chat template; it cannot be used with --raw")
    try:
        with Store() as store:
            retrieval, report = DocumentService(store, args.docs_budget).context_for_paths(
                args.docs, args.prompt, session.n_ctx, lambda text: len(model.tokenize(text)), _progress_printer()
            )
    except (ValueError, DocumentIndexError, StoreError) as error:
        return _error(str(error))
    for note in report.notes():
        print(f"bonsai-tui generate: {note}", file=sys.stderr)
    if not args.json:
        found = ", ".join(source.label() for source in retrieval.sources) or "nothing relevant found"
        print(f"[sources: {found}]", file=sys.stderr)
    return retrieval


def _progress_printer():
    if not sys.stderr.isatty():
        return None

    def show(progress: Progress) -> None:
        if progress.files_done % PROGRESS_EVERY == 0 or progress.files_done == progress.files_total:
            end = "\n" if progress.files_done == progress.files_total else ""
            print(f"\rindexing: {progress.files_done}/{progress.files_total} files", end=end, file=sys.stderr)

    return show


def _error(message: str) -> Literal[False]:
    print(f"bonsai-tui generate: {message}", file=sys.stderr)
    return False
