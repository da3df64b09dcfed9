"""The demo model: a tiny random-weight Bonsai-shaped model, so the app can be explored without
the download. Its replies are noise, and the status bar says "random weights"."""

from __future__ import annotations

from pathlib import Path

from bonsai_tui.settings import cache_dir

DEMO_MODEL = "demo-tiny-random.gguf"


def demo_model_path() -> Path:
    from engine.synth import write_model

    path = cache_dir() / DEMO_MODEL
    return path if path.exists() else write_model(path, preset="tiny")
