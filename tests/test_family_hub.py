"""Ternary-Bonsai from the hub: the Q2_0 GGUF picked from the repo's file list, downloaded by
`bonsai-tui download ternary-...`, and shown in the models picker with its size and state."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import OptionList

from bonsai_tui import cli, hub
from bonsai_tui.hub.repo_files import pick_ternary_gguf
from conftest import point_at, until
from fakehub import FakeHub
from test_first_run import PickerApp, option_texts

TERNARY_4B = hub.TERNARY_MODELS[1]
REPO = TERNARY_4B.repo
FILES = {  # what a Ternary-Bonsai repo might hold: the model in both layouts, and others
    f"{REPO}/README.md": b"# Ternary Bonsai 4B",
    f"{REPO}/Ternary-Bonsai-4B-Q2_0_g64.gguf": b"g" * 300_000,
    f"{REPO}/Ternary-Bonsai-4B-Q2_0.gguf": b"t" * 250_000,
    f"{REPO}/Ternary-Bonsai-4B-F16.gguf": b"f" * 1000,
}


@pytest.fixture
def ternary_hub(hf_cache: Path, monkeypatch: pytest.MonkeyPatch):
    with FakeHub(dict(FILES)) as server:
        point_at(monkeypatch, server.url)
        yield server


def test_the_q2_gguf_is_picked_prismml_layout_first() -> None:
    assert pick_ternary_gguf(["a-Q2_0_g64.gguf", "README.md", "a-Q2_0.gguf", "a-Q1_0.gguf"]) == "a-Q2_0.gguf"
    assert pick_ternary_gguf(["a-Q2_0_g64.gguf", "a-F16.gguf"]) == "a-Q2_0_g64.gguf"
    assert pick_ternary_gguf(["a-Q1_0.gguf", "notes-q2_0.txt"]) is None


def test_resolve_reads_the_file_list_from_the_hub(ternary_hub: FakeHub) -> None:
    resolved = hub.resolve(TERNARY_4B)
    assert resolved == hub.ModelChoice(REPO, "Ternary-Bonsai-4B-Q2_0.gguf", "Ternary 4B", 250_000)
    listings = [path for _, path, _ in ternary_hub.behaviour.requests if "/tree/" in path]
    assert listings == [f"/api/models/{REPO}/tree/main?recursive=true"]


def test_download_command_fetches_the_ternary_file(ternary_hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["download", "ternary-4b"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "Ternary-Bonsai-4B-Q2_0.gguf" and path.read_bytes() == b"t" * 250_000
    assert hub.cached_path(TERNARY_4B) == path  # known by its repo alone, without network
    assert hub.remembered_choice() == hub.ModelChoice(REPO, "Ternary-Bonsai-4B-Q2_0.gguf", "Ternary 4B", 1_070_000_000)
    ternary_hub.behaviour.requests.clear()
    assert hub.resolve(TERNARY_4B).filename == path.name  # from the cache
    assert not [path for _, path, _ in ternary_hub.behaviour.requests if "/tree/" in path]


def test_a_repo_without_a_q2_gguf_is_one_line(hf_cache: Path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeHub({f"{REPO}/Ternary-Bonsai-4B-F16.gguf": b"f"}) as server:
        point_at(monkeypatch, server.url)
        assert cli.main(["download", "ternary-4b"]) == 2
    assert capsys.readouterr().err == "\nbonsai-tui: prism-ml/Ternary-Bonsai-4B-gguf has no Q2_0 GGUF file\n"


def test_offline_and_not_downloaded(hf_cache: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.NotCachedOffline, match="^Ternary 4B is not downloaded and HF_HUB_OFFLINE is set$"):
        hub.download(TERNARY_4B)


def test_models_command_lists_the_ternary_variants(ternary_hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.download(TERNARY_4B)
    capsys.readouterr()
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  Ternary 1.7B prism-ml/Ternary-Bonsai-1.7B-gguf/<its Q2_0 GGUF>  [~457 MB]" in lines
    assert "  Ternary 4B   prism-ml/Ternary-Bonsai-4B-gguf/Ternary-Bonsai-4B-Q2_0.gguf  [downloaded]" in lines


@pytest.mark.anyio
async def test_picker_shows_ternary_sizes_and_downloads(ternary_hub: FakeHub) -> None:
    hub.download(TERNARY_4B)
    app = PickerApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: len(option_texts(app)) >= 6)
        assert option_texts(app)[3:6] == [
            "Ternary 1.7B        457 MB   to download",
            "Ternary 4B          0.2 MB   downloaded",
            "Ternary 8B        2,180 MB   to download",
        ]
        app.screen.query_one(OptionList).highlighted = 5
        await pilot.press("enter")
    assert app.picked == [hub.TERNARY_MODELS[2]]  # not downloaded: the app resolves its file when it downloads


def test_hub_down_while_listing_is_one_line(hf_cache: Path, monkeypatch) -> None:
    from conftest import closed_port_url

    point_at(monkeypatch, closed_port_url())
    with pytest.raises(hub.HubUnreachable, match=r"^cannot reach the hub at http://127\.0\.0\.1:\d+ \(no network\?\)"):
        hub.resolve(TERNARY_4B)
