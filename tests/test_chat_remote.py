"""The chat as a client of an OpenAI-compatible server (`bonsai-tui --endpoint`), driven by Pilot
against our own server on 127.0.0.1 (in this process, so a test can hold its engine mid-reply)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverutil import running_server
from test_app import open_chat, send, wait_for
from textual.widgets import Label, OptionList

import engine
import engine.session
from bonsai_tui import cli
from bonsai_tui.app import BonsaiApp, ChatOptions
from bonsai_tui.backends import Endpoint
from bonsai_tui.screens.chat import ChatScreen
from bonsai_tui.screens.connect import ConnectScreen
from bonsai_tui.screens.models import ModelsScreen
from bonsai_tui.server.app import ServerOptions
from engine.sampling import SamplingParams
from engine.session import StopReason

pytestmark = pytest.mark.anyio
KEY = "sk-local"
SAMPLED = SamplingParams(temperature=1.0, top_k=20, top_p=0.9, seed=5)


@pytest.fixture(scope="module")
def served_model(tiny_model_path: Path) -> engine.Model:
    return engine.load(tiny_model_path, threads=1, exact=True)


@pytest.fixture(scope="module")
def server(served_model: engine.Model) -> Iterator[str]:
    options = ServerOptions(load=lambda: served_model, model_id="tiny.gguf", n_ctx=512, api_key=KEY)
    with running_server(options) as url:
        yield url


def remote_app(endpoint: Endpoint, max_tokens: int = 12) -> BonsaiApp:
    options = ChatOptions(None, endpoint=endpoint, max_tokens=max_tokens, choose_params=lambda _: SAMPLED)
    return BonsaiApp(options)


async def test_the_chat_streams_the_servers_reply(server: str, served_model: engine.Model) -> None:
    app = remote_app(Endpoint(server, api_key=KEY).connect())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        reply = await send(pilot, screen, "hello there")
        local = engine.ChatSession(served_model, n_ctx=512, params=SAMPLED)
        expected = list(local.chat([{"role": "user", "content": "hello there"}], max_tokens=12))[-1]
        assert reply.content == expected.text
        assert reply.stop_reason is StopReason.MAX_TOKENS and reply.stats.generated_tokens == 12
        status = str(screen.status.render())
        assert f"ctx {expected.stats.prompt_tokens + 12}/512" in status
        assert f"tiny.gguf @ {server}/v1" in status
        second = await send(pilot, screen, "and then?")  # the whole conversation goes to the server
        assert second.stats.prompt_tokens > expected.stats.prompt_tokens + 12


async def test_esc_stops_the_reply_and_the_server_frees_its_slot(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, calls = threading.Event(), []
    real_sample = engine.session.sample

    def held_after_three_tokens(logits, recent, params, rng):
        calls.append(1)
        if len(calls) > 3:
            gate.wait(timeout=30)
        return real_sample(logits, recent, params, rng)

    monkeypatch.setattr(engine.session, "sample", held_after_three_tokens)
    app = remote_app(Endpoint(server, api_key=KEY).connect(), max_tokens=200)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await pilot.press(*"write a lot", "enter")
        await wait_for(pilot, lambda: screen._reply is not None and len(screen._reply.content) > 0)
        reply = screen._reply
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generator.busy)
        gate.set()
        assert reply.stop_reason is StopReason.CANCELLED and reply.has_class("-stopped")
        health = lambda: httpx.get(f"{server}/health").json()  # noqa: E731
        await wait_for(pilot, lambda: health()["slots_processing"] == 0)
        assert len(calls) < 20  # the server stopped too, long before its 200 tokens


async def test_ignored_settings_are_marked_and_a_server_that_went_away_is_one_line(served_model: engine.Model) -> None:
    with running_server(ServerOptions(load=lambda: served_model, model_id="m", n_ctx=256)) as url:
        endpoint = Endpoint(url).connect()
    endpoint.kind = "openai"  # as api.openai.com: no top_k, min_p, repeat_penalty
    app = remote_app(endpoint)
    async with app.run_test(size=(140, 40), notifications=True) as pilot:
        screen = await open_chat(pilot)
        labels = [str(label.render()) for label in screen.query(".param-label").results(Label)]
        assert "Top-k (ignored)" in labels and "Min-p (ignored)" in labels and "Repeat penalty (ignored)" in labels
        assert "Temperature" in labels and "Top-p" in labels
        await pilot.press(*"hello", "enter")
        await wait_for(pilot, lambda: not screen.generator.busy and bool(app._notifications))
        assert [n.message for n in app._notifications] == [
            f"cannot reach {url}/v1: is the server running? (`bonsai-tui serve` starts one)"
        ]


async def test_connect_to_a_server_from_the_model_picker(server: str, served_model: engine.Model) -> None:
    app = remote_app(Endpoint(server, api_key=KEY).connect())
    async with app.run_test(size=(100, 30)) as pilot:
        await open_chat(pilot)
        app.action_models()
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsScreen) and bool(app.screen.query(OptionList)))
        options = app.screen.query_one(OptionList)
        await wait_for(pilot, lambda: options.option_count > 0)
        options.highlighted = options.option_count - 1
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen))
        connect = app.screen
        await pilot.press("enter")  # the default URL: nothing listens there, or not this server
        await wait_for(pilot, lambda: "error" in connect.query_one("#connect-status").classes)
        connect.query_one("#connect-url").value = server
        connect.query_one("#connect-key").value = "wrong"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "invalid API key" in str(connect.query_one("#connect-status", Label).render()))
        connect.query_one("#connect-key").value = KEY
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen is not connect)
        assert app.screen.backend.where == f"{server}/v1"


def test_endpoint_flag_errors_are_one_line(capsys: pytest.CaptureFixture[str], server: str) -> None:
    assert cli.main(["--endpoint", server]) == 2
    err = capsys.readouterr().err
    assert err == f"bonsai-tui: {server}/v1 refused the request (401: this server needs an API key: send Authorization: Bearer KEY): pass --api-key KEY\n"
    assert cli.main(["--model-name", "x"]) == 2
    assert capsys.readouterr().err == "bonsai-tui: --api-key and --model-name go with --endpoint URL\n"
