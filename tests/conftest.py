"""Shared fixtures: tiny synthetic models written once per test session, and the Qwen2 vocab data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

import engine
from engine.synth import write_model

TEST_DATA = Path(os.environ.get("BONSAI_TEST_DATA", Path.home() / ".cache" / "bonsai-tui-test-data"))


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests (marked anyio) run on asyncio."""
    return "asyncio"


@pytest.fixture(autouse=True)
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own app files (settings, history, logs, caches)."""
    monkeypatch.setenv("BONSAI_TUI_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "tiny.gguf", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path) -> Iterator[engine.Model]:
    with engine.load(tiny_model_path, threads=2) as model:
        yield model


@pytest.fixture(scope="session")
def exact_tiny_model(tiny_model_path: Path) -> Iterator[engine.Model]:
    """The tiny model with float32 decode: for tests that compare two computation orders exactly
    (int8 rounding can flip a near-tie argmax between them)."""
    with engine.load(tiny_model_path, threads=2, exact=True) as model:
        yield model


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


# ---- a hub on 127.0.0.1 (see fakehub.py) ----------------------------------------------------


def point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Send huggingface_hub to `url` (it reads HF_ENDPOINT once, at import)."""
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


_HELD_PORTS: list[socket.socket] = []  # bound, never listening, kept for the whole session


def closed_port_url() -> str:
    """An endpoint where nothing listens: the hub is down or the network is gone. The port stays
    bound (without listening) so no other test's server can be given it in the meantime."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(s)
    return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache and app home for one test."""
    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("BONSAI_TUI_HOME", str(tmp_path / "home"))
    return cache


UNTIL_TIMEOUT_S = 60.0  # generous for a loaded machine: only a hang should ever reach it


async def until(pilot, condition, timeout_s: float = UNTIL_TIMEOUT_S) -> None:
    """Let a Pilot-driven app run until `condition()` holds; raise if it never does (a hang fails
    the test instead of blocking it, and a slow machine only waits longer). The one polling helper."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the app never reached the expected state")
        await pilot.pause(0.01)


def run_on_capped_path(script: str | Path, cap: str) -> str:
    """Run a twin-check script in a process of its own with BONSAI_TUI_CPU=cap (the cap must be set
    before Numba loads) and return what it printed; a failing script fails the test with its stderr."""
    env = {**os.environ, "BONSAI_TUI_CPU": cap}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()
