"""Where an unexpected error's traceback goes: the log file, never the screen or an HTTP body."""

from __future__ import annotations

import sys
import traceback

from bonsai_tui.settings import log_path


def log_crash(error: BaseException | None = None) -> str:
    """Append `error`'s traceback (default: the one being handled) to the log; returns its path,
    for the one-line message the user sees."""
    path = log_path()
    with open(path, "a", encoding="utf-8") as log:
        if error is None:
            traceback.print_exception(*sys.exc_info(), file=log)
        else:
            traceback.print_exception(error, file=log)
    return str(path)
