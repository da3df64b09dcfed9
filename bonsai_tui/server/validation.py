"""Request bodies -> GenerationRequest, or a 400 naming the field at fault.

Ranges follow OpenAI's API (temperature 0-2, max_tokens at least 1, top_logprobs 0-20); the
llama.cpp extras (top_k, min_p, repeat_penalty, repeat_last_n) follow the engine's own checks.
Unknown fields are ignored, as llama-server and OpenAI-compatible servers generally do.
"""

from __future__ import annotations

import json
from typing import Any

from bonsai_tui.server.errors import bad_request
from bonsai_tui.server.slots import GenerationRequest
from engine.logprobs import MAX_ALTERNATIVES
from engine.session import Message
from engine.sampling import SamplingParams

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_MISSING = object()

# request field -> (SamplingParams field, type, low, high); None: unbounded on that side
SAMPLING_FIELDS: dict[str, tuple[str, type, float | None, float | None]] = {
    "temperature": ("temperature", float, 0.0, 2.0),
    "top_p": ("top_p", float, 0.0, 1.0),
    "top_k": ("top_k", int, 0, None),
    "min_p": ("min_p", float, 0.0, 1.0),
    "presence_penalty": ("presence_penalty", float, -2.0, 2.0),
    "frequency_penalty": ("frequency_penalty", float, -2.0, 2.0),
    "repeat_penalty": ("repeat_penalty", float, 0.0, None),
    "repeat_last_n": ("penalty_window", int, 0, None),
}


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "a boolean", str: "a string", list: "an array", dict: "an object"}[kind]


def field_of(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    """body[name] checked against `kind` (null counts as absent). JSON's true is no integer."""
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise bad_request(f"{name} must be {_type_name(kind)}", param=name)
    return value


def in_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise bad_request(f"{name} must be {bounds} (got {value})", param=name)


def sampling_params(body: dict[str, Any], defaults: SamplingParams) -> SamplingParams:
    changes: dict[str, Any] = {}
    for name, (target, kind, low, high) in SAMPLING_FIELDS.items():
        value = field_of(body, name, kind)
        if value is not None:
            in_range(name, value, low, high)
            changes[target] = value
    seed = field_of(body, "seed", int)
    changes["seed"] = seed if seed is not None and seed >= 0 else None  # -1: llama.cpp's "random"
    params = defaults.with_changes(**changes)
    try:
        params.validate()
    except ValueError as error:
        raise bad_request(str(error), param=str(error).split(" ", 1)[0]) from None
    return params


def max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "n_predict"):
        value = field_of(body, name, int)
        if value is not None:
            if name == "n_predict" and value < 0:  # llama.cpp's "no limit"
                return None
            in_range(name, value, 1, None)
            return value
    return None


def stop_strings(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise bad_request("stop must be a string or an array of strings", param="stop")


def _content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request(f"messages[{index}].content: only text parts are supported", param="messages")
            texts.append(part["text"])
        return "".join(texts)
    raise bad_request(f"messages[{index}].content must be a string or an array of text parts", param="messages")


def messages(body: dict[str, Any]) -> list[Message]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages must be a non-empty array", param="messages")
    out: list[Message] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise bad_request(f"messages[{i}] must be an object", param="messages")
        role = ROLES.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise bad_request(
                f"messages[{i}].role must be system, user or assistant (got {message.get('role')!r})", param="messages"
            )
        out.append({"role": role, "content": _content(message, i)})
    return out


def response_format(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """("json_object" | "json_schema", the schema) the reply must follow, or None for free text.
    Accepts OpenAI's {"type": "json_schema", "json_schema": {"name", "schema"}} and llama-server's
    {"type": "json_object", "schema": {...}}."""
    fmt = field_of(body, "response_format", dict, {"type": "text"})
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = fmt.get("schema")
        return ("json_object", {"type": "object"}) if schema is None else ("json_schema", _schema(schema))
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise bad_request("response_format.json_schema must be an object with a schema", param="response_format")
        return "json_schema", _schema(spec.get("schema", {"type": "object"}))
    raise bad_request("response_format.type must be text, json_object or json_schema", param="response_format")


def _schema(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise bad_request("the response_format schema must be a JSON object", param="response_format")
    return schema


def _only_one_choice(body: dict[str, Any]) -> None:
    for name in ("n", "best_of"):
        n = field_of(body, name, int, 1)
        if n != 1:
            raise bad_request(f"{name} must be 1: one choice per request", param=name)


def chat_request(body: dict[str, Any], defaults: SamplingParams) -> GenerationRequest:
    _only_one_choice(body)
    if body.get("tools"):
        raise bad_request("tools are not supported by this server", param="tools")
    logprobs = None
    top = field_of(body, "top_logprobs", int)
    if field_of(body, "logprobs", bool, False):
        logprobs = top or 0
        in_range("top_logprobs", logprobs, 0, MAX_ALTERNATIVES)
    elif top is not None:
        raise bad_request("top_logprobs needs logprobs set to true", param="top_logprobs")
    kwargs = field_of(body, "chat_template_kwargs", dict, {})
    thinking = kwargs.get("enable_thinking", False)
    if not isinstance(thinking, bool):
        raise bad_request("chat_template_kwargs.enable_thinking must be a boolean", param="chat_template_kwargs")
    return GenerationRequest(
        params=sampling_params(body, defaults),
        messages=messages(body),
        max_tokens=max_tokens(body),
        stop=stop_strings(body),
        logprobs=logprobs,
        enable_thinking=thinking,
    )


def completion_request(body: dict[str, Any], defaults: SamplingParams, tokenize, n_vocab: int) -> GenerationRequest:
    """/v1/completions: `prompt` is text, token ids, or a one-element array of either."""
    _only_one_choice(body)
    if field_of(body, "echo", bool, False):
        raise bad_request("echo is not supported", param="echo")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        ids = tokenize(prompt)
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = token_ids({"tokens": prompt}, n_vocab, "prompt")
    else:
        raise bad_request("prompt must be a string or an array of token ids (one prompt per request)", param="prompt")
    if not ids:
        raise bad_request("prompt is empty", param="prompt")
    logprobs = field_of(body, "logprobs", int)
    if logprobs is not None:
        in_range("logprobs", logprobs, 0, 5)
    return GenerationRequest(
        params=sampling_params(body, defaults),
        prompt_ids=ids,
        max_tokens=max_tokens(body),
        stop=stop_strings(body),
        logprobs=logprobs,
    )


def token_ids(body: dict[str, Any], n_vocab: int, name: str = "tokens") -> list[int]:
    tokens = body.get("tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise bad_request(f"{name} must be an array of token ids", param=name)
    bad = [t for t in tokens if not 0 <= t < n_vocab]
    if bad:
        raise bad_request(f"token id {bad[0]} is outside the vocabulary (0..{n_vocab - 1})", param=name)
    return tokens

