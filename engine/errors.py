"""Errors the engine raises on purpose. Each one prints as a single line a user can act on."""

from __future__ import annotations

from pathlib import Path


class EngineError(Exception):
    """Base class: anything the app may show to a user as a one-line message."""


class ModelFileError(EngineError):
    """The file is not a model this engine can run (corrupt, truncated, wrong architecture...)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(path).name}: {reason}")


class ContextFullError(EngineError):
    """The conversation needs more tokens than the context holds."""

    def __init__(self, needed: int, n_ctx: int) -> None:
        self.needed = needed
        self.n_ctx = n_ctx
        super().__init__(
            f"the conversation needs {needed} tokens but the context holds {n_ctx}: "
            "drop the oldest turns or start a new chat"
        )
