"""Downloads against a local fake hub: progress, resume, checksum, errors, offline, the CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import constants

from bonsai_tui import hub
from conftest import closed_port_url, point_at
from fakehub import FakeHub

KEY = f"{hub.DEFAULT_MODEL.repo}/{hub.DEFAULT_MODEL.filename}"
CONTENT = bytes(range(256)) * 12_000  # 3 MB: several 1 MB progress steps


@pytest.fixture
def fake_hub(hf_cache: Path, monkeypatch: pytest.MonkeyPatch):
    with FakeHub({KEY: CONTENT}) as server:
        point_at(monkeypatch, server.url)
        yield server


def downloads(server: FakeHub) -> list[str | None]:
    return [rng for method, path, rng in server.behaviour.requests if method == "GET" and "/resolve/" in path]


def test_full_download_reports_progress_and_lands_in_the_hf_cache(fake_hub: FakeHub, hf_cache: Path) -> None:
    events: list[hub.Progress] = []
    path = hub.download(hub.DEFAULT_MODEL, events.append)
    assert path.read_bytes() == CONTENT
    assert path.is_relative_to(hf_cache) and path.parent.name == "0123456789abcdef0123456789abcdef01234567"
    assert [e.done for e in events] == sorted(e.done for e in events) and events[-1].done == len(CONTENT)
    assert len(events) >= 4 and all(e.total == len(CONTENT) for e in events)
    assert hub.cached_path(hub.DEFAULT_MODEL) == path
    assert hub.remembered_choice() == hub.DEFAULT_MODEL


def test_a_second_launch_uses_the_cache_without_network(fake_hub: FakeHub, monkeypatch) -> None:
    path = hub.download(hub.DEFAULT_MODEL)
    fake_hub.behaviour.requests.clear()
    point_at(monkeypatch, closed_port_url())
    assert hub.download(hub.DEFAULT_MODEL) == path
    assert fake_hub.behaviour.requests == []


def test_interrupted_download_resumes_with_a_range_request(fake_hub: FakeHub, hf_cache: Path) -> None:
    half = len(CONTENT) // 2
    blob_dir = hf_cache / "models--prism-ml--Bonsai-1.7B-gguf" / "blobs"
    blob_dir.mkdir(parents=True)
    (blob_dir / f"{fake_hub.sha256(KEY)}.incomplete").write_bytes(CONTENT[:half])  # a killed earlier run
    events: list[hub.Progress] = []
    path = hub.download(hub.DEFAULT_MODEL, events.append)
    assert path.read_bytes() == CONTENT
    assert downloads(fake_hub) == [f"bytes={half}-"]
    assert events[0].done == half  # the bar starts where the last run stopped


def test_cancel_keeps_the_partial_file_for_next_time(fake_hub: FakeHub, hf_cache: Path) -> None:
    cancel = threading.Event()

    def stop_after_first_megabyte(p: hub.Progress) -> None:
        if p.done >= 1 << 20:
            cancel.set()

    with pytest.raises(hub.DownloadCancelled):
        hub.download(hub.DEFAULT_MODEL, stop_after_first_megabyte, cancel)
    assert hub.cached_path(hub.DEFAULT_MODEL) is None  # a partial file is never a model
    (partial,) = hf_cache.rglob("*.incomplete")
    kept = partial.stat().st_size
    assert 0 < kept < len(CONTENT)
    assert hub.download(hub.DEFAULT_MODEL).read_bytes() == CONTENT
    assert downloads(fake_hub)[-1] == f"bytes={kept}-"


def test_connection_cut_midway_is_resumed(fake_hub: FakeHub) -> None:
    fake_hub.behaviour.cut_after = (1 << 20) + 5000
    assert hub.download(hub.DEFAULT_MODEL).read_bytes() == CONTENT
    assert downloads(fake_hub)[0] is None and downloads(fake_hub)[1].startswith("bytes=")


def test_checksum_mismatch_is_refetched_then_refused(fake_hub: FakeHub) -> None:
    fake_hub.behaviour.corrupt = True
    with pytest.raises(hub.HubError, match="sha256 check twice"):
        hub.download(hub.DEFAULT_MODEL)
    assert hub.cached_path(hub.DEFAULT_MODEL) is None and len(downloads(fake_hub)) == 2


def test_missing_file_and_missing_repo(fake_hub: FakeHub) -> None:
    with pytest.raises(hub.HubError, match="has no file nope.gguf"):
        hub.download(hub.ModelChoice(hub.DEFAULT_MODEL.repo, "nope.gguf"))
    with pytest.raises(hub.HubError, match="no repository someone/else"):
        hub.download(hub.ModelChoice("someone/else", "x.gguf"))


def test_auth_required(fake_hub: FakeHub) -> None:
    fake_hub.behaviour.status = 401
    with pytest.raises(hub.HubError, match="HF_TOKEN"):
        hub.download(hub.DEFAULT_MODEL)


def test_hub_unreachable(hf_cache: Path, monkeypatch) -> None:
    point_at(monkeypatch, closed_port_url())
    with pytest.raises(hub.HubError, match="cannot reach the hub"):
        hub.download(hub.DEFAULT_MODEL)


def test_offline_mode_without_a_copy(hf_cache: Path, monkeypatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.HubError, match="HF_HUB_OFFLINE"):
        hub.download(hub.DEFAULT_MODEL)


def test_disk_full_says_how_much_and_where(fake_hub: FakeHub, monkeypatch, hf_cache: Path) -> None:
    monkeypatch.setattr(hub.shutil, "disk_usage", lambda where: type("U", (), {"free": 1000})())
    with pytest.raises(hub.HubError, match=r"not enough disk space in .*blobs: the model needs 3 MB, 0 MB free"):
        hub.download(hub.DEFAULT_MODEL)


def test_cli_download_and_models(fake_hub: FakeHub, hf_cache: Path, tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": fake_hub.url, "HF_HUB_CACHE": str(hf_cache), "BONSAI_TUI_HOME": str(tmp_path / "home"),
           "PATH": "/usr/bin:/bin"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "bonsai_tui.cli", *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    result = run("download")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("Bonsai-1.7B-Q1_0.gguf") and "100%" in result.stderr
    listing = run("models")
    assert "prism-ml/Bonsai-1.7B-gguf" in listing.stdout and "3.1 MB" in listing.stdout
    missing = run("download", "--repo", "someone/else", "--file", "x.gguf")
    assert missing.returncode == 2 and missing.stderr.strip() == "bonsai-tui: no repository someone/else on the hub (or it is private: set HF_TOKEN)"


def test_offline_mode_with_a_cached_copy(fake_hub: FakeHub, monkeypatch) -> None:
    path = hub.download(hub.DEFAULT_MODEL)
    fake_hub.behaviour.requests.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.download(hub.DEFAULT_MODEL) == path and fake_hub.behaviour.requests == []
