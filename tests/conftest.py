"""Shared fixtures: tiny synthetic models written once per test session, and the Qwen2 vocab data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import engine
from engine.synth import write_model

TEST_DATA = Path(os.environ.get("BONSAI_TEST_DATA", Path.home() / ".cache" / "bonsai-tui-test-data"))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "tiny.gguf", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path) -> engine.Model:
    return engine.load(tiny_model_path, threads=2)


@pytest.fixture(scope="session")
def qwen2_vocab() -> Path:
    """llama.cpp's ggml-vocab-qwen2.gguf (the real Qwen2 vocabulary) and its expected ids.

    Fetched by tests/fetch_test_data.py (`.ci/run` does it). Missing data skips locally but fails in CI.
    """
    path = TEST_DATA / "ggml-vocab-qwen2.gguf"
    if not path.exists():
        message = f"{path} missing: run python tests/fetch_test_data.py"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
