"""Where bonsai-tui keeps its files (platformdirs), overridable with BONSAI_TUI_HOME for tests."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "bonsai-tui"


def _dir(kind: str) -> Path:
    home = os.environ.get("BONSAI_TUI_HOME")
    if home:
        path = Path(home) / kind
    else:
        path = Path(getattr(platformdirs, f"user_{kind}_dir")(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    return _dir("data")


def config_dir() -> Path:
    return _dir("config")


def cache_dir() -> Path:
    return _dir("cache")


def log_path() -> Path:
    return _dir("log") / "bonsai-tui.log"
