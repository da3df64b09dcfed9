"""Downloads against a local fake hub: progress, resume, checksum, errors, offline, the CLI."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import constants
from textual.app import App
from textual.widgets import Label, ProgressBar
from textual.widgets._footer import FooterKey

from bonsai_tui import cli, hub
from bonsai_tui.hub import resumable_download
from bonsai_tui.screens.download import DownloadScreen, transfer_text
from conftest import closed_port_url, point_at, until
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


def test_a_server_ignoring_the_range_gets_the_whole_file_again(fake_hub: FakeHub, hf_cache: Path) -> None:
    fake_hub.behaviour.ignore_range = True
    blob_dir = hf_cache / "models--prism-ml--Bonsai-1.7B-gguf" / "blobs"
    blob_dir.mkdir(parents=True)
    (blob_dir / f"{fake_hub.sha256(KEY)}.incomplete").write_bytes(CONTENT[:1000])
    events: list[hub.Progress] = []
    assert hub.download(hub.DEFAULT_MODEL, events.append).read_bytes() == CONTENT
    assert downloads(fake_hub) == ["bytes=1000-"] and events[-1].done == len(CONTENT)


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
    with pytest.raises(hub.ChecksumMismatch, match="sha256 check twice"):
        hub.download(hub.DEFAULT_MODEL)
    assert hub.cached_path(hub.DEFAULT_MODEL) is None and len(downloads(fake_hub)) == 2


def test_missing_file_and_missing_repo(fake_hub: FakeHub) -> None:
    with pytest.raises(hub.NotOnHub, match="^prism-ml/Bonsai-1.7B-gguf has no file nope.gguf$"):
        hub.download(hub.ModelChoice(hub.DEFAULT_MODEL.repo, "nope.gguf"))
    with pytest.raises(hub.NotOnHub, match="no repository someone/else"):
        hub.download(hub.ModelChoice("someone/else", "x.gguf"))


def test_auth_required(fake_hub: FakeHub) -> None:
    fake_hub.behaviour.status = 401
    with pytest.raises(hub.AuthRequired, match="accept its terms and log in .set HF_TOKEN.$"):
        hub.download(hub.DEFAULT_MODEL)


def test_hub_unreachable(hf_cache: Path, monkeypatch) -> None:
    point_at(monkeypatch, closed_port_url())
    with pytest.raises(hub.HubUnreachable, match="^cannot reach the hub at http://127.0.0.1:.* .no network.."):
        hub.download(hub.DEFAULT_MODEL)


def test_offline_mode_without_a_copy(hf_cache: Path, monkeypatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.NotCachedOffline, match="HF_HUB_OFFLINE"):
        hub.download(hub.DEFAULT_MODEL)


def test_disk_full_says_how_much_and_where(fake_hub: FakeHub, monkeypatch, hf_cache: Path) -> None:
    monkeypatch.setattr(resumable_download.shutil, "disk_usage", lambda where: type("Usage", (), {"free": 1_000_000})())
    with pytest.raises(hub.DiskFull) as caught:
        hub.download(hub.DEFAULT_MODEL)
    blobs = hf_cache / "models--prism-ml--Bonsai-1.7B-gguf" / "blobs"
    assert (caught.value.needed, caught.value.free, caught.value.where) == (len(CONTENT), 1_000_000, blobs)
    assert str(caught.value).startswith(f"not enough disk space in {blobs}: the model needs 3 MB more, 1 MB free")
    assert downloads(fake_hub) == []  # refused before fetching anything


class FillingDisk:
    """A file that runs out of space once `room` bytes have been written to it."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self) -> FillingDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def test_disk_filling_up_mid_download_keeps_the_part_for_later(fake_hub: FakeHub, monkeypatch, hf_cache: Path) -> None:
    monkeypatch.setattr(resumable_download, "open", lambda path, mode: FillingDisk(open(path, mode), room=1 << 20), raising=False)
    with pytest.raises(hub.DiskFull) as caught:
        hub.download(hub.DEFAULT_MODEL)
    assert caught.value.needed == len(CONTENT) - (1 << 20)
    assert caught.value.where == hf_cache / "models--prism-ml--Bonsai-1.7B-gguf" / "blobs"
    monkeypatch.delattr(resumable_download, "open")  # space freed
    assert hub.download(hub.DEFAULT_MODEL).read_bytes() == CONTENT
    assert downloads(fake_hub)[-1] == f"bytes={1 << 20}-"


def test_a_partial_file_longer_than_the_model_is_discarded(fake_hub: FakeHub, hf_cache: Path) -> None:
    blob_dir = hf_cache / "models--prism-ml--Bonsai-1.7B-gguf" / "blobs"
    blob_dir.mkdir(parents=True)
    (blob_dir / f"{fake_hub.sha256(KEY)}.incomplete").write_bytes(CONTENT + b"junk")
    assert hub.download(hub.DEFAULT_MODEL).read_bytes() == CONTENT
    assert downloads(fake_hub) == [None]


def test_server_error_says_try_later(fake_hub: FakeHub) -> None:
    fake_hub.behaviour.status = 503
    with pytest.raises(hub.HubUnreachable, match="^the hub answered HTTP 503 for Bonsai-1.7B-Q1_0.gguf; try again later$"):
        hub.download(hub.DEFAULT_MODEL)


def test_cli_download_reads_the_hf_environment(fake_hub: FakeHub, hf_cache: Path, tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": fake_hub.url, "HF_HUB_CACHE": str(hf_cache), "BONSAI_TUI_HOME": str(tmp_path / "home"),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "bonsai_tui.cli", "download"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(hub.cached_path(hub.DEFAULT_MODEL))
    last_line = result.stderr.strip().splitlines()[-1]  # text mode reads each "\r" redraw as a line
    assert re.fullmatch(r"Bonsai-1.7B-Q1_0.gguf \[█{30}\] 100%     3.1/3.1 MB +[\d.]+ MB/s 0 s left", last_line.rstrip())
    offline = subprocess.run([sys.executable, "-m", "bonsai_tui.cli", "download"],
                             env=env | {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": closed_port_url()},
                             capture_output=True, text=True, timeout=120)
    assert (offline.returncode, offline.stdout) == (0, result.stdout)


def test_cli_models_lists_and_deletes(fake_hub: FakeHub, hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models"]) == 0
    assert "No GGUF files in the Hugging Face cache." in capsys.readouterr().out
    assert cli.main(["download", "1.7B"]) == 0
    path = hub.cached_path(hub.DEFAULT_MODEL)
    assert capsys.readouterr().out == f"{path}\n"
    assert cli.main(["models"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "  Bonsai 1.7B  prism-ml/Bonsai-1.7B-gguf/Bonsai-1.7B-Q1_0.gguf  [downloaded]" in listing
    assert "  Bonsai 4B    prism-ml/Bonsai-4B-gguf/Bonsai-4B-Q1_0.gguf  [~572 MB]" in listing
    assert f"  prism-ml/Bonsai-1.7B-gguf/Bonsai-1.7B-Q1_0.gguf  3.1 MB  {path}" in listing
    assert cli.main(["models", "--delete", "prism-ml/Bonsai-1.7B-gguf"]) == 0
    assert capsys.readouterr().out == "removed prism-ml/Bonsai-1.7B-gguf (3.1 MB)\n"
    assert hub.cached_path(hub.DEFAULT_MODEL) is None and not path.exists()
    assert cli.main(["models", "--delete", "prism-ml/Bonsai-1.7B-gguf"]) == 2
    assert capsys.readouterr().err == "bonsai-tui: prism-ml/Bonsai-1.7B-gguf is not in the Hugging Face cache\n"


def test_cli_download_errors_are_one_line(fake_hub: FakeHub, hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["download", "4b"]) == 2
    assert capsys.readouterr().err.strip() == (
        "bonsai-tui: no repository prism-ml/Bonsai-4B-gguf on the hub (or it is private: set HF_TOKEN)"
    )
    assert cli.main(["download", "--repo", hub.DEFAULT_MODEL.repo, "--file", "x.gguf"]) == 2
    assert capsys.readouterr().err.strip() == "bonsai-tui: prism-ml/Bonsai-1.7B-gguf has no file x.gguf"
    assert cli.main(["download", "8b", "--repo", "a/b"]) == 2
    assert capsys.readouterr().err.strip() == "bonsai-tui: give either a Bonsai variant or --repo/--file, not both"


def test_offline_mode_with_a_cached_copy(fake_hub: FakeHub, monkeypatch) -> None:
    path = hub.download(hub.DEFAULT_MODEL)
    fake_hub.behaviour.requests.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.download(hub.DEFAULT_MODEL) == path and fake_hub.behaviour.requests == []


# ---- the download screen, with Pilot -------------------------------------------------------


class DownloadApp(App[None]):
    """Hosts the download screen alone and records what it was dismissed with."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[Path | None] = []

    def on_mount(self) -> None:
        self.push_screen(DownloadScreen(hub.DEFAULT_MODEL, demo_model=lambda: Path("/demo.gguf")), self.results.append)


def label(app: App, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


def footer_actions(app: App) -> list[str]:
    return [key.action for key in app.screen.query(FooterKey)]


def test_transfer_text_says_when_the_checksum_is_being_computed() -> None:
    assert transfer_text(hub.Progress(1_500_000, 3_000_000, 500_000.0)) == "1.5 / 3.0 MB · 0.5 MB/s · 3 s left"
    assert transfer_text(hub.Progress(3_000_000, 3_000_000, 0.0)) == "3.0 MB downloaded · checking its sha256…"


@pytest.mark.anyio
async def test_download_screen_shows_progress_cancels_and_resumes(fake_hub: FakeHub, hf_cache: Path) -> None:
    fake_hub.behaviour.hold_at = 3 << 19  # 1.5 MB, then the transfer stalls until released
    app = DownloadApp()
    async with app.run_test(size=(100, 30)) as pilot:
        bar = app.screen.query_one(ProgressBar)
        assert "cancel" in footer_actions(app)
        assert label(app, "#download-file") == "prism-ml/Bonsai-1.7B-gguf / Bonsai-1.7B-Q1_0.gguf · about 248 MB"
        await until(pilot, lambda: bar.progress == 1 << 20)
        assert bar.total == len(CONTENT)
        assert re.fullmatch(r"1\.0 / 3\.1 MB · [\d.]+ MB/s · \d+ s left", label(app, "#download-transfer"))
        await pilot.press("escape")
        fake_hub.behaviour.release.set()
        await until(pilot, lambda: app.screen.query_one("#download-actions").display)
        assert label(app, "#download-error") == "download cancelled; it resumes where it stopped next time"
        assert label(app, "#download-transfer") == "1.0 of 3.1 MB downloaded so far"
        assert label(app, "#download-title") == "Bonsai 1.7B is not downloaded yet"
        assert not bar.display and app.results == []
        await until(pilot, lambda: "cancel" not in footer_actions(app))  # nothing left to cancel
        fake_hub.behaviour.release.clear()  # the resumed transfer stalls too, so the screen stays up
        await pilot.click("#retry")
        await until(pilot, lambda: bar.progress > 1 << 20)
        assert label(app, "#download-title") == "Downloading Bonsai 1.7B" and "cancel" in footer_actions(app)
        fake_hub.behaviour.release.set()
        await until(pilot, lambda: app.results != [])
    assert app.results == [hub.cached_path(hub.DEFAULT_MODEL)]
    assert app.results[0].read_bytes() == CONTENT
    assert downloads(fake_hub) == [None, f"bytes={1 << 20}-"]


@pytest.mark.anyio
async def test_download_screen_offers_ways_on_when_the_hub_is_down(hf_cache: Path, monkeypatch) -> None:
    point_at(monkeypatch, closed_port_url())
    app = DownloadApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.query_one("#download-actions").display)
        assert label(app, "#download-error").startswith("cannot reach the hub at http://127.0.0.1:")
        assert label(app, "#download-transfer") == ""  # not "Asking the hub…" any more
        await until(pilot, lambda: app.screen.query_one("#demo").region.area > 0)  # laid out: clickable
        await pilot.click("#demo")
        await until(pilot, lambda: app.results)
    assert app.results == [Path("/demo.gguf")]


# ---- what bonsai_tui/hub/ asks of huggingface_hub --------------------------------------------------------

PUBLIC_HF_MODULES = {"huggingface_hub", "huggingface_hub.constants", "huggingface_hub.errors", "huggingface_hub.utils"}


def test_hub_uses_only_huggingface_hubs_public_api() -> None:
    """A private helper (such as file_download.http_get) can change in any release and break downloads."""
    import ast
    import importlib
    import inspect
    import pkgutil

    imported = []
    for module in [importlib.import_module(f"bonsai_tui.hub.{info.name}") for info in pkgutil.iter_modules(hub.__path__)]:
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("huggingface_hub"):
                imported += [f"{node.module}.{alias.name}" for alias in node.names]
    assert imported and all(
        name.rsplit(".", 1)[0] in PUBLIC_HF_MODULES and not name.rsplit(".", 1)[1].startswith("_") for name in imported
    ), imported


def test_importing_hub_changes_no_huggingface_hub_setting() -> None:
    code = (
        "import huggingface_hub.constants as c\n"
        "before = {k: v for k, v in vars(c).items() if k.isupper()}\n"
        "import bonsai_tui.hub\n"
        "after = {k: v for k, v in vars(c).items() if k.isupper()}\n"
        "print(sorted(k for k in before if before[k] != after[k]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


def test_a_closed_port_stays_closed_for_the_whole_test() -> None:
    import errno as errors_module
    import socket
    from urllib.parse import urlparse

    port = urlparse(closed_port_url()).port
    with socket.socket() as other, pytest.raises(OSError) as taken:
        other.bind(("127.0.0.1", port))  # no fake hub started later can be given this port
    assert taken.value.errno == errors_module.EADDRINUSE
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))
