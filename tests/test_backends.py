"""The chat's remote backend (bonsai_tui/backends.py) against our own server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import closed_port_url
from serverutil import running_server

import engine
from bonsai_tui.backends import Endpoint, RemoteError, RemoteSession, api_base
from bonsai_tui.server.app import ServerOptions
from engine.errors import ContextFullError
from engine.sampling import SamplingParams
from engine.session import DoneEvent, StopReason, TokenEvent

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def served_model(tiny_model_path: Path) -> engine.Model:
    return engine.load(tiny_model_path, threads=1, exact=True)


@pytest.fixture(scope="module")
def server(served_model: engine.Model) -> Iterator[str]:
    options = ServerOptions(load=lambda: served_model, model_id="tiny.gguf", n_ctx=256, api_key="k3y")
    with running_server(options) as url:
        yield url


def session_for(url: str, **params) -> RemoteSession:
    endpoint = Endpoint(url, api_key="k3y").connect()
    return RemoteSession(endpoint, params=SamplingParams(**params))


def test_urls_are_normalised_to_the_api_base() -> None:
    assert api_base("localhost:8080") == "http://localhost:8080/v1"
    assert api_base("https://example.org/v1/") == "https://example.org/v1"


def test_connect_learns_the_model_its_context_and_what_the_server_takes(server: str) -> None:
    endpoint = Endpoint(server + "/v1", api_key="k3y").connect()
    assert (endpoint.model_name, endpoint.n_ctx, endpoint.kind) == ("tiny.gguf", 256, "bonsai-tui")
    assert endpoint.ignored_params == frozenset()
    assert Endpoint("x", model_name="m").ignored_params == {"top_k", "min_p", "repeat_penalty"}  # a plain OpenAI API


def test_a_streamed_reply_matches_the_servers_own_under_a_seed(server: str, served_model: engine.Model) -> None:
    session = session_for(server, temperature=1.0, seed=4)
    events = list(session.chat(HELLO, max_tokens=12))
    tokens, done = events[:-1], events[-1]
    assert isinstance(done, DoneEvent) and all(isinstance(t, TokenEvent) for t in tokens)
    local = engine.ChatSession(served_model, n_ctx=256, params=SamplingParams(temperature=1.0, seed=4))
    expected = list(local.chat(HELLO, max_tokens=12))[-1]
    assert done.text == "".join(t.text for t in tokens) == expected.text
    assert done.stop_reason is StopReason.MAX_TOKENS
    assert (done.stats.prompt_tokens, done.stats.generated_tokens) == (expected.stats.prompt_tokens, 12)
    assert len(session.cached_ids) == expected.stats.prompt_tokens + 12


def test_cancel_stops_the_stream(server: str) -> None:
    session = session_for(server, temperature=0.0)
    events = session.chat(HELLO, max_tokens=200)
    first = next(events)
    assert isinstance(first, TokenEvent)
    session.cancel()
    rest = list(events)
    assert rest[-1].stop_reason is StopReason.CANCELLED and len(rest) < 150


def test_a_per_reply_stop_event_also_stops_it(server: str) -> None:
    stop = threading.Event()
    session = session_for(server, temperature=0.0)
    events = session.chat(HELLO, max_tokens=200, stop=stop)
    next(events)
    stop.set()
    assert list(events)[-1].stop_reason is StopReason.CANCELLED


def test_failures_are_one_line_with_a_way_forward(server: str) -> None:
    with pytest.raises(RemoteError, match=r"^cannot reach http://127\.0\.0\.1:\d+/v1: is the server running\?"):
        Endpoint(closed_port_url()).connect()
    with pytest.raises(RemoteError, match=r"refused the request \(401: this server needs an API key.*\): pass --api-key KEY$"):
        Endpoint(server).connect()
    with pytest.raises(RemoteError, match=r"refused the request \(401: invalid API key\): check --api-key$"):
        Endpoint(server, api_key="wrong").connect()
    with pytest.raises(RemoteError, match=r"has no model 'other' \(it has: tiny\.gguf\)$"):
        Endpoint(server, api_key="k3y", model_name="other").connect()
    session = session_for(server)
    with pytest.raises(ContextFullError):
        list(session.chat([{"role": "user", "content": "word " * 400}]))
