"""`bonsai-tui serve` under load and at its edges: concurrent streams, a client that disconnects,
the bounded queue, the API key, /health while the model loads, and the command's refusals."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from pathlib import Path

import httpx
import openai
import pytest
from serverutil import running_server, wait_until

import engine
from bonsai_tui import cli
from bonsai_tui.server.app import ServerOptions, create_app
from bonsai_tui.server.slots import Delta, Started, StopStrings, merged
from engine.session import TokenEvent

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def served_model(tiny_model_path: Path) -> engine.Model:
    return engine.load(tiny_model_path, threads=1, exact=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_for(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def stream_text(client: openai.OpenAI, **kwargs) -> str:
    chunks = client.chat.completions.create(model="m", messages=HELLO, stream=True, **kwargs)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_two_concurrent_streams_both_complete(served_model: engine.Model) -> None:
    options = ServerOptions(load=lambda: served_model, model_id="m", n_ctx=512, parallel=2)
    with running_server(options) as url:
        client = client_for(url)
        alone = {seed: stream_text(client, seed=seed, temperature=1.0, max_tokens=40) for seed in (1, 2)}
        results: dict[int, str] = {}
        threads = [
            threading.Thread(target=lambda s=seed: results.__setitem__(s, stream_text(client, seed=s, temperature=1.0, max_tokens=40)))
            for seed in (1, 2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == alone


class OpenStream:
    """A streamed reply that has started and is not being read (closing it is the client going away)."""

    def __init__(self, url: str, max_tokens: int) -> None:
        self.client = httpx.Client(timeout=30)
        body = {"messages": HELLO, "max_tokens": max_tokens, "stream": True, "temperature": 0}  # greedy: no early end of turn
        self.response = self.client.send(self.client.build_request("POST", f"{url}/v1/chat/completions", json=body), stream=True)
        self.lines = self.response.iter_lines()  # kept: dropping the iterator would close the connection
        while not next(self.lines).startswith("data: {"):  # the role chunk: the reply has started
            pass

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_a_disconnect_mid_stream_stops_the_reply_and_frees_the_slot(served_model: engine.Model) -> None:
    options = ServerOptions(load=lambda: served_model, model_id="m", n_ctx=4096, parallel=1, queue=0)
    with running_server(options) as url:
        OpenStream(url, max_tokens=4000).close()
        wait_until(lambda: httpx.get(f"{url}/health").json()["slots_processing"] == 0, "the slot was freed")
        assert httpx.get(f"{url}/health").json()["slots_idle"] == 1
        reply = client_for(url).chat.completions.create(model="m", messages=HELLO, max_tokens=3, temperature=0)
        assert reply.usage.completion_tokens == 3
        # the cancelled reply stopped early: far fewer than its 4000 tokens reached the cache
        assert reply.usage.prompt_tokens_details.cached_tokens < 1000


def test_beyond_the_slots_and_the_queue_is_a_503_with_retry_after(served_model: engine.Model) -> None:
    options = ServerOptions(load=lambda: served_model, model_id="m", n_ctx=4096, parallel=1, queue=0)
    with running_server(options) as url:
        stream = OpenStream(url, max_tokens=4000)
        try:
            busy = httpx.post(f"{url}/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "1"
            assert busy.json()["error"]["code"] == "server_busy"
            assert httpx.get(f"{url}/health").status_code == 200  # health answers while a reply streams
            with pytest.raises(openai.InternalServerError):
                client_for(url).chat.completions.create(model="m", messages=HELLO, max_tokens=2)
        finally:
            stream.close()


def test_stopping_the_server_ends_a_stream_with_an_error_event(served_model: engine.Model) -> None:
    options = ServerOptions(load=lambda: served_model, model_id="m", n_ctx=4096)
    app = create_app(options)
    with running_server(options, app=app) as url:
        stream = OpenStream(url, max_tokens=4000)
        app.state.server.stop_replies()  # what Ctrl-C does first
        last = [line for line in stream.lines if line][-1]
        stream.close()
        assert json.loads(last.removeprefix("data: ")) == {"error": {
            "message": "the server is shutting down: the reply was stopped", "type": "unavailable_error",
            "param": None, "code": "server_stopping"}}
        busy = httpx.post(f"{url}/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "server_stopping"


def test_the_api_key_guards_everything_but_health(served_model: engine.Model) -> None:
    options = ServerOptions(load=lambda: served_model, model_id="m", n_ctx=256, api_key="s3cret")
    with running_server(options) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        missing = httpx.get(f"{url}/v1/models")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError) as caught:
            client_for(url, "wrong").models.list()
        assert caught.value.status_code == 401 and caught.value.body["message"] == "invalid API key"
        assert [m.id for m in client_for(url, "s3cret").models.list().data] == ["m"]
        reply = client_for(url, "s3cret").chat.completions.create(model="m", messages=HELLO, max_tokens=2, temperature=0)
        assert reply.usage.completion_tokens == 2


def test_health_is_503_while_the_model_loads(served_model: engine.Model) -> None:
    release = threading.Event()

    def slow_load() -> engine.Model:
        release.wait(20)
        return served_model

    with running_server(ServerOptions(load=slow_load, model_id="m"), wait_ready=False) as url:
        loading = httpx.get(f"{url}/health")
        assert loading.status_code == 503 and loading.json()["error"]["code"] == "model_loading"
        assert httpx.post(f"{url}/v1/chat/completions", json={"messages": HELLO}).status_code == 503
        release.set()
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, "the model loaded")


def test_a_model_that_fails_to_load_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    assert cli.main(["serve", "--model", str(bad), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("bonsai-tui serve: bad.gguf: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "0.0.0.0"], "bonsai-tui serve: refusing to listen on 0.0.0.0 without --api-key"),
        (["--parallel", "0"], "bonsai-tui serve: --ctx must be 0 or more, --parallel at least 1"),
    ],
)
def test_serve_refuses_bad_flags(tiny_model_path: Path, flags: list[str], message: str, capsys) -> None:
    assert cli.main(["serve", "--model", str(tiny_model_path), *flags]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_each_conversation_comes_back_to_the_slot_holding_its_prefix(served_model: engine.Model) -> None:
    options = ServerOptions(load=lambda: served_model, model_id="m", n_ctx=512, parallel=2)
    with running_server(options) as url:
        client = client_for(url)
        conversations = [[{"role": "user", "content": f"conversation {name} begins with its own words"}] for name in "AB"]
        firsts = []
        for conversation in conversations:  # A fills one slot, B the other
            first = client.chat.completions.create(model="m", messages=conversation, max_tokens=8, temperature=0)
            conversation += [{"role": "assistant", "content": first.choices[0].message.content},
                             {"role": "user", "content": "go on"}]
            firsts.append(first)
        for conversation, first in zip(conversations, firsts):  # A comes back after B: still its slot
            second = client.chat.completions.create(model="m", messages=conversation, max_tokens=8, temperature=0)
            assert second.usage.prompt_tokens_details.cached_tokens == first.usage.total_tokens - 1


def test_one_log_line_per_request(served_model: engine.Model, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bonsai_tui.server")
    with running_server(ServerOptions(load=lambda: served_model, model_id="m", n_ctx=256)) as url:
        client_for(url).chat.completions.create(model="m", messages=HELLO, max_tokens=4, temperature=0)
        httpx.post(f"{url}/v1/chat/completions", json={"messages": HELLO, "max_tokens": 0})
    lines = [r.getMessage() for r in caplog.records if "/v1/chat/completions" in r.getMessage()]
    assert len(lines) == 2
    assert re.fullmatch(r"POST /v1/chat/completions 200 [\d.]+ s prompt \d+ \(cached \d+\), 4 tokens, [\d.]+ tok/s, length", lines[0])
    assert re.fullmatch(r"POST /v1/chat/completions 400 [\d.]+ s", lines[1])


def test_stop_strings_hold_back_only_what_may_begin_one() -> None:
    stops = StopStrings(("END", "\n\n"))
    assert [stops.push(t) for t in ("ab", "cE", "N", "x E", "N", "D and more")] == ["ab", "c", "", "ENx ", "", ""]
    assert stops.matched and stops.flush() == ""
    unmatched = StopStrings(("END",))
    assert unmatched.push("the EN") == "the " and unmatched.flush() == "EN"


def test_deltas_that_arrive_together_leave_as_one() -> None:
    first, second = (TokenEvent(1, "a", 0, 0.0), TokenEvent(2, "b", 1, 0.0))
    events = merged([Started(0), Delta("a", (first,)), Delta("b", (second,))])
    assert events == [Started(0), Delta("ab", (first, second))]
