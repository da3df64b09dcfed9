"""A conversation as Markdown (to read) or JSON (to reuse), and JSON back into a new conversation.

The JSON is OpenAI-style: a `messages` list of {"role", "content"} with the system prompt first,
plus the `parameters` the replies were sampled with, so other tools can read it as it is.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import Any

from bonsai_tui.store import STOPPED, Conversation
from engine.sampling import SamplingParams

ROLES = ("system", "user", "assistant")
SAMPLING_NAMES = {field.name for field in fields(SamplingParams)}
PARAMETER_NAMES = SAMPLING_NAMES | {"max_tokens"}


class ImportFormatError(ValueError):
    """A one-line reason a file is not a conversation that can be imported."""


@dataclass(frozen=True)
class ImportedConversation:
    """What `from_json` read: the keyword arguments of `Store.create_conversation`."""

    title: str
    model: str
    system_prompt: str
    params: dict[str, Any]
    preset: str
    messages: list[dict[str, str]]

    def as_new_conversation(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "params": self.params,
            "preset": self.preset,
            "messages": self.messages,
        }


def _date(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def to_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    facts = [
        ("Model", conversation.model),
        ("Created", _date(conversation.created)),
        ("Updated", _date(conversation.updated)),
        ("Preset", conversation.preset),
        ("Parameters", ", ".join(f"{name} {value}" for name, value in conversation.params.items())),
    ]
    lines += [f"- {name}: {value}" for name, value in facts if value]
    if conversation.system_prompt:
        lines += ["", "## System", "", conversation.system_prompt]
    for message, sources in zip(conversation.messages, _sources_given(conversation)):
        lines += ["", f"## {message.role.capitalize()}", "", message.content]
        if message.status == STOPPED:
            lines += ["", "*(stopped before the end)*"]
        if sources is not None:
            lines += ["", "Sources:" if sources else "Sources: nothing relevant found in the attached files"]
            lines += [f"- {_citation(source)}" for source in sources]
    return "\n".join(lines) + "\n"


def _sources_given(conversation: Conversation) -> list[tuple[dict[str, Any], ...] | None]:
    """For each message, the sources its reply was given: a question's sources belong to the
    reply that follows it (or to the question itself when no reply came). None: no documents."""
    given: list[tuple[dict[str, Any], ...] | None] = [None] * len(conversation.messages)
    pending: int | None = None  # the index of the question with documents waiting for its reply
    for index, message in enumerate(conversation.messages):
        if message.role == "user":
            pending = index if message.context is not None else None
            if pending is not None:
                given[index] = message.sources
        elif message.role == "assistant" and pending is not None:
            given[index], given[pending] = conversation.messages[pending].sources, None
            pending = None
    return given


def _citation(source: dict[str, Any]) -> str:
    heading = f" ({source['heading']})" if source.get("heading") else ""
    return f"{source['path']}, lines {source['start_line']}-{source['end_line']}{heading}, score {source['score']:g}"


def to_json(conversation: Conversation) -> str:
    system = [{"role": "system", "content": conversation.system_prompt}] if conversation.system_prompt else []
    document = {
        "title": conversation.title,
        "model": conversation.model,
        "preset": conversation.preset,
        "created": _date(conversation.created),
        "parameters": conversation.params,
        "messages": system + [
            {**message.as_chat(), **({"sources": list(sources)} if sources is not None else {})}
            for message, sources in zip(conversation.messages, _sources_given(conversation))
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def from_json(text: str) -> ImportedConversation:
    """Read an exported conversation, or any OpenAI-style {"messages": [...]} (or bare list).

    Raises ImportFormatError naming what is wrong and where."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFormatError(f"not JSON: {error}") from error
    if isinstance(document, list):
        document = {"messages": document}
    if not isinstance(document, dict) or "messages" not in document:
        raise ImportFormatError('expected an object with a "messages" list')
    messages = _messages(document["messages"])
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if not turns:
        raise ImportFormatError("messages: no user or assistant message to import")
    return ImportedConversation(
        title=_text(document, "title"),
        model=_text(document, "model"),
        system_prompt="\n\n".join(system),
        params=_parameters(document.get("parameters", {})),
        preset=_text(document, "preset"),
        messages=turns,
    )


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key) or ""
    if not isinstance(value, str):
        raise ImportFormatError(f"{key} must be a string")
    return value


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ImportFormatError("messages must be a list")
    return [_message(index, message) for index, message in enumerate(value)]


def _message(index: int, message: Any) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise ImportFormatError(f"{where} must be an object with role and content")
    role = message.get("role")
    if role not in ROLES:
        raise ImportFormatError(f"{where}.role must be one of {', '.join(ROLES)} (got {role!r})")
    return {"role": role, "content": _content(where, message.get("content"))}


def _content(where: str, content: Any) -> str:
    """A string, or OpenAI's list of parts, of which the text parts are kept."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        texts = [part.get("text") for part in content if part.get("type") == "text"]
        if texts and all(isinstance(text, str) for text in texts):
            return "\n".join(texts)
    raise ImportFormatError(f"{where}.content must be text")


def _parameters(value: Any) -> dict[str, Any]:
    """The sampling parameters bonsai-tui knows, validated; other tools' extra keys are ignored."""
    if not isinstance(value, dict):
        raise ImportFormatError("parameters must be an object")
    known = {name: number for name, number in value.items() if name in PARAMETER_NAMES}
    max_tokens = known.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ImportFormatError(f"parameters: max_tokens must be a positive whole number (got {max_tokens!r})")
    sampling = {name: number for name, number in known.items() if name in SAMPLING_NAMES}
    try:
        SamplingParams(**sampling).validate()
    except (TypeError, ValueError) as error:
        raise ImportFormatError(f"parameters: {error}") from error
    return known
