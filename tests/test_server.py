"""`bonsai-tui serve`: the OpenAI-compatible API, driven by the official openai client and raw HTTP.

The server runs the tiny model (float32 decode, so a reused cache and a fresh prefill agree exactly)
on a free port of 127.0.0.1; see test_server_slots.py for concurrency, cancels, the queue and the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import openai
import pytest
from serverutil import running_server

import engine
from bonsai_tui.server.app import ServerOptions

HELLO = [{"role": "user", "content": "hello there"}]
N_CTX = 256


@pytest.fixture(scope="module")
def served_model(tiny_model_path: Path) -> engine.Model:
    """One thread: on a busy machine a tiny model's parallel kernels mostly wait for each other."""
    return engine.load(tiny_model_path, threads=1, exact=True)


@pytest.fixture(scope="module")
def server(served_model: engine.Model) -> Iterator[str]:
    options = ServerOptions(load=lambda: served_model, model_id="tiny.gguf", n_ctx=N_CTX, parallel=2)
    with running_server(options) as url:
        yield url


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def chat(client: openai.OpenAI, **kwargs):
    kwargs.setdefault("messages", HELLO)
    kwargs.setdefault("max_tokens", 16)
    return client.chat.completions.create(model="tiny.gguf", **kwargs)


def streamed(client: openai.OpenAI, **kwargs) -> tuple[str, list]:
    chunks = list(chat(client, stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_health_and_models(server: str, client: openai.OpenAI) -> None:
    assert httpx.get(f"{server}/health").json() == {
        "status": "ok", "slots_idle": 2, "slots_processing": 0, "requests_waiting": 0,
    }
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny.gguf"]
    assert models[0].meta["n_ctx"] == N_CTX


def test_chat_reply_usage_and_timings(client: openai.OpenAI) -> None:
    reply = chat(client, seed=7, max_tokens=12)
    assert reply.object == "chat.completion" and reply.model == "tiny.gguf" and reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 12
    assert reply.usage.prompt_tokens == len(engine_prompt(client, HELLO))
    timings = reply.model_extra["timings"]
    assert timings["predicted_n"] == 11 and timings["prompt_n"] + timings["cache_n"] == reply.usage.prompt_tokens


def engine_prompt(client: openai.OpenAI, messages) -> list[int]:
    base = str(client.base_url).removesuffix("/v1/")
    prompt = httpx.post(f"{base}/apply-template", json={"messages": messages}).json()["prompt"]
    return httpx.post(f"{base}/tokenize", json={"content": prompt}).json()["tokens"]


def test_stream_reassembles_to_the_same_reply_under_the_same_seed(client: openai.OpenAI) -> None:
    whole = chat(client, seed=11, temperature=1.0).choices[0].message.content
    text, chunks = streamed(client, seed=11, temperature=1.0, stream_options={"include_usage": True})
    assert text == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 2) + ["length"]
    usage = chunks[-1].usage  # the usage chunk comes last, with no choices
    assert chunks[-1].choices == [] and usage.completion_tokens == 16


def test_raw_stream_ends_with_done(server: str) -> None:
    body = {"messages": HELLO, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_seed_reproduces_and_another_seed_differs(client: openai.OpenAI) -> None:
    replies = [chat(client, seed=s, temperature=1.5, max_tokens=24).choices[0].message.content for s in (3, 3, 4)]
    assert replies[0] == replies[1]
    assert replies[0] != replies[2]


def test_second_turn_reports_cached_tokens(client: openai.OpenAI) -> None:
    conversation = [{"role": "user", "content": "a conversation that comes back"}]
    first = chat(client, messages=conversation, seed=1)
    conversation += [{"role": "assistant", "content": first.choices[0].message.content},
                     {"role": "user", "content": "and then?"}]
    second = chat(client, messages=conversation, seed=1)
    cached = second.usage.prompt_tokens_details.cached_tokens
    # the session continues from its own ids: the first prompt and the reply (all but the last
    # token, which was sampled but never run through the model) are in the slot's cache
    assert cached == first.usage.prompt_tokens + first.usage.completion_tokens - 1


def test_stop_strings_end_the_reply_before_them(client: openai.OpenAI) -> None:
    whole = chat(client, seed=5, temperature=1.0, max_tokens=32).choices[0].message.content
    stop = whole[10:13]
    expected = whole[: whole.find(stop)]
    reply = chat(client, seed=5, temperature=1.0, max_tokens=32, stop=[stop, "never appears"])
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].finish_reason == "stop"
    text, chunks = streamed(client, seed=5, temperature=1.0, max_tokens=32, stop=stop)
    assert text == expected and chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs_are_the_models_own(client: openai.OpenAI, served_model: engine.Model) -> None:
    reply = chat(client, temperature=0.0, max_tokens=4, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == 4
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert entry.token == entry.top_logprobs[0].token  # greedy: the best one
    logits = served_model.logits(engine_prompt(client, HELLO))[-1].astype(np.float64)
    expected = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    assert content[0].logprob == pytest.approx(expected.max(), abs=1e-4)
    assert bytes(content[0].bytes).decode("utf-8", "replace") == content[0].token


def test_a_prompt_that_fits_runs_until_the_context_is_full(client: openai.OpenAI) -> None:
    reply = chat(client, max_tokens=10_000, temperature=0.0)
    assert reply.choices[0].finish_reason == "length"
    assert N_CTX <= reply.usage.total_tokens <= N_CTX + 1


def test_text_completions_with_legacy_logprobs(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="tiny.gguf", prompt="Once upon a time", max_tokens=5, logprobs=2, seed=2)
    choice = reply.choices[0]
    assert reply.object == "text_completion" and choice.finish_reason == "length"
    assert "".join(choice.logprobs.tokens) == choice.text
    assert len(choice.logprobs.top_logprobs) == 5 and all(len(t) <= 2 for t in choice.logprobs.top_logprobs)
    stream = client.completions.create(model="tiny.gguf", prompt="Once upon a time", max_tokens=5, seed=2, stream=True)
    assert "".join(c.choices[0].text for c in stream) == choice.text


def test_tokenize_detokenize_and_template(server: str, served_model: engine.Model) -> None:
    ids = httpx.post(f"{server}/tokenize", json={"content": "hello world"}).json()["tokens"]
    assert ids == served_model.tokenize("hello world")
    pieces = httpx.post(f"{server}/tokenize", json={"content": "hello world", "with_pieces": True}).json()["tokens"]
    assert "".join(p["piece"] for p in pieces) == "hello world"
    assert httpx.post(f"{server}/detokenize", json={"tokens": ids}).json() == {"content": "hello world"}
    prompt = httpx.post(f"{server}/apply-template", json={"messages": HELLO}).json()["prompt"]
    assert prompt == served_model.template.render(HELLO, add_generation_prompt=True)


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens", "max_tokens must be at least 1 (got 0)"),
        ({"messages": HELLO, "max_tokens": -5}, "max_tokens", "max_tokens must be at least 1 (got -5)"),
        ({"messages": HELLO, "temperature": -0.5}, "temperature", "temperature must be between 0.0 and 2.0 (got -0.5)"),
        ({"messages": HELLO, "temperature": 2.5}, "temperature", "temperature must be between 0.0 and 2.0 (got 2.5)"),
        ({"messages": HELLO, "temperature": "hot"}, "temperature", "temperature must be a number"),
        ({"messages": HELLO, "max_tokens": 2.5}, "max_tokens", "max_tokens must be an integer"),
        ({"messages": HELLO, "stop": 3}, "stop", "stop must be a string or an array of strings"),
        ({"messages": []}, "messages", "messages must be a non-empty array"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages",
         "messages[0].role must be system, user or assistant (got 'robot')"),
        ({"messages": HELLO, "top_logprobs": 2}, "top_logprobs", "top_logprobs needs logprobs set to true"),
        ({"messages": HELLO, "logprobs": True, "top_logprobs": 21}, "top_logprobs",
         "top_logprobs must be between 0 and 20 (got 21)"),
        ({"messages": HELLO, "n": 2}, "n", "n must be 1: one choice per request"),
    ],
)
def test_bad_parameters_are_400s_naming_the_field(server: str, body: dict, param: str, message: str) -> None:
    response = httpx.post(f"{server}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


def test_malformed_json_and_unknown_paths(server: str) -> None:
    response = httpx.post(f"{server}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("the body is not valid JSON")
    response = httpx.post(f"{server}/v1/chat/completions", json=[1, 2])
    assert response.status_code == 400 and response.json()["error"]["message"] == "the body must be a JSON object"
    response = httpx.get(f"{server}/v1/nothing")
    assert response.status_code == 404 and response.json()["error"]["message"] == "no such endpoint: /v1/nothing"
    response = httpx.get(f"{server}/v1/chat/completions")
    assert response.status_code == 405 and "Traceback" not in response.text


def test_a_prompt_longer_than_the_context_is_a_400(client: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "word " * 400}]
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, messages=long)
    assert caught.value.code == "context_length_exceeded"
    assert f"but the context holds {N_CTX}" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        chat(client, messages=long, stream=True)  # refused before the stream starts
    assert chat(client, max_tokens=2, temperature=0).choices[0].finish_reason == "length"  # and the server still answers


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_replies_validate(client: openai.OpenAI, stream: bool) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for seed in (1, 2):
        kwargs = dict(seed=seed, temperature=1.0, max_tokens=100, response_format=response_format)
        text = streamed(client, **kwargs)[0] if stream else chat(client, **kwargs).choices[0].message.content
        jsonschema.validate(json.loads(text), PERSON)


def test_json_object_replies_parse(client: openai.OpenAI) -> None:
    reply = chat(client, seed=3, temperature=1.0, max_tokens=200, response_format={"type": "json_object"})
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


@pytest.mark.parametrize(
    ("response_format", "message"),
    [
        ({"type": "xml"}, "response_format.type must be text, json_object or json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "strin"}}}}},
         "cannot use this JSON Schema: "),
    ],
)
def test_a_bad_response_format_is_a_400(client: openai.OpenAI, response_format: dict, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, response_format=response_format)
    assert caught.value.param == "response_format" and caught.value.body["message"].startswith(message)
