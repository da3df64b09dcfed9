"""The chat's Output choice (free text / JSON / JSON Schema) driven through Pilot on the tiny
random-weight model, which never writes JSON by itself."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from textual.pilot import Pilot
from textual.widgets import Markdown, Select, Static, TextArea
from test_app import make_app, open_chat, panel, send

from bonsai_tui.generation_settings import FREE_TEXT, JSON_OBJECT, JSON_SCHEMA, GenerationSettings, sample_schema
from bonsai_tui.history import settings_from, stored_params
from bonsai_tui.screens.chat import ChatScreen
from engine.sampling import SamplingParams
from engine.session import StopReason

pytestmark = pytest.mark.anyio
SAMPLED = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, seed=3)
COLOR = '{"type":"object","properties":{"color":{"enum":["red","green"]},"n":{"type":"integer","minimum":1,"maximum":3}},"required":["color","n"],"additionalProperties":false}'


async def choose_output(pilot: Pilot, screen: ChatScreen, label: str) -> None:
    """Open the Output select with the keyboard and pick `label` (the options in their order)."""
    select = screen.query_one("#output", Select)
    select.focus()
    await pilot.press("enter")
    labels = ["Free text", "JSON", "JSON Schema"]
    moves = labels.index(label) - labels.index(next(l for l, v in zip(labels, (FREE_TEXT, JSON_OBJECT, JSON_SCHEMA)) if v == select.value))
    await pilot.press(*(["down"] * moves if moves > 0 else ["up"] * -moves), "enter")
    await pilot.pause()


async def type_schema(pilot: Pilot, screen: ChatScreen, text: str) -> None:
    box = screen.query_one("#json-schema", TextArea)
    box.focus()
    box.select_all()
    await pilot.press("delete", *text)
    await pilot.pause()


async def test_json_schema_output_is_checked_as_typed_and_the_reply_validates(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path, max_tokens=60, params=SAMPLED)
    async with app.run_test(size=(140, 50)) as pilot:
        screen = await open_chat(pilot)
        box, error = screen.query_one("#json-schema", TextArea), screen.query_one("#json-schema-error", Static)
        assert not box.display and panel(screen).settings.output == FREE_TEXT
        await choose_output(pilot, screen, "JSON Schema")
        assert box.display and box.text == sample_schema()  # the tutorial's model card to start from
        assert panel(screen).settings.output == JSON_SCHEMA

        await type_schema(pilot, screen, '{"type": "strin"}')
        assert error.display and str(error.render()) == "cannot use this JSON Schema: Invalid type: strin"
        assert box.has_class("-invalid") and panel(screen).settings.json_schema == sample_schema()  # last good one

        await type_schema(pilot, screen, COLOR)
        assert not error.display and not box.has_class("-invalid")
        assert panel(screen).settings.json_schema == COLOR

        screen.prompt.focus()
        reply = await send(pilot, screen, "pick a color")
        assert reply.stop_reason == StopReason.EOS
        value = json.loads(reply.content)
        jsonschema.validate(value, json.loads(COLOR))
        assert reply.content == json.dumps(value, separators=(",", ":"))  # compact to the model and the history
        shown = reply.query_one(".message-text", Markdown).source
        assert shown == "```json\n" + json.dumps(value, indent=2) + "\n```"  # indented on screen


async def test_json_output_gives_an_object_and_free_text_does_not(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path, max_tokens=20, params=SamplingParams(temperature=0.0, seed=0))
    async with app.run_test(size=(140, 50)) as pilot:
        screen = await open_chat(pilot)
        free = await send(pilot, screen, "hello")
        with pytest.raises(json.JSONDecodeError):
            json.loads(free.content)
        await choose_output(pilot, screen, "JSON")
        assert panel(screen).settings.output == JSON_OBJECT and not screen.query_one("#json-schema").display
        screen.prompt.focus()
        reply = await send(pilot, screen, "hello")
        assert reply.stop_reason == StopReason.EOS and isinstance(json.loads(reply.content), dict)


def test_the_output_choice_is_stored_with_the_conversations_parameters() -> None:
    settings = GenerationSettings(SamplingParams(), max_tokens=99, output=JSON_SCHEMA, json_schema=COLOR)
    fallback = GenerationSettings(SamplingParams())
    assert settings_from(stored_params(settings), "", settings.preset, fallback) == settings
    older = {k: v for k, v in stored_params(settings).items() if k not in ("output", "json_schema")}
    assert settings_from(older, "", "", fallback).output == FREE_TEXT  # conversations saved before the choice
