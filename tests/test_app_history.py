"""The chat app and the history store together: what is saved when, and reopening it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import Button

from bonsai_tui.store import Store
from bonsai_tui.widgets.sidebar import ConversationSidebar
from engine.session import StopReason
from test_app import PausedEngine, make_app, open_chat, paused_engine, send, start_paused_reply, wait_for  # noqa: F401, F811  (paused_engine is a fixture)

pytestmark = pytest.mark.anyio


def stored() -> list:
    with Store() as store:
        return [store.load_conversation(c.id) for c in store.list_conversations()]


async def test_each_turn_is_saved_with_its_stats(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        reply = await send(pilot, screen, "hello there")
        (conversation,) = stored()
        assert conversation.title == "hello there" and conversation.model == str(tiny_model_path)
        roles = [(m.role, m.content, m.status) for m in conversation.messages]
        assert roles == [("user", "hello there", "complete"), ("assistant", reply.content, "max_tokens")]
        assert conversation.messages[1].stats["generated_tokens"] == 12
        assert conversation.params["temperature"] == 0.0 and conversation.params["max_tokens"] == 12


async def test_the_question_is_saved_before_the_reply_and_a_stopped_reply_as_stopped(
    tiny_model_path: Path, paused_engine: PausedEngine
) -> None:
    app = make_app(tiny_model_path, max_tokens=100)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await start_paused_reply(pilot, screen, "write a lot")
        (conversation,) = stored()
        assert [(m.role, m.content) for m in conversation.messages] == [("user", "write a lot")]
        await pilot.press("escape")
        paused_engine.release()
        await wait_for(pilot, lambda: not screen.generator.busy)
        (conversation,) = stored()
        assert conversation.messages[1].status == "stopped"
        assert conversation.messages[1].content == screen.chat_messages[-1].content


async def test_switching_conversations_restores_messages_and_settings(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_chat(pilot)
        first = await send(pilot, screen, "first chat")
        await pilot.press("ctrl+n")
        await send(pilot, screen, "second chat")
        assert len(stored()) == 2
        await pilot.press("f3")
        sidebar = screen.query_one(ConversationSidebar)
        assert sidebar.display and [c.title for c in sidebar.conversations] == ["second chat", "first chat"]
        await pilot.pause()
        assert app.focused is sidebar.option_list
        await pilot.press("home", "down", "enter")  # the second in the list: the first chat
        await wait_for(pilot, lambda: screen.chat_messages and screen.chat_messages[0].content == "first chat")
        assert [m.content for m in screen.chat_messages] == ["first chat", first.content]
        assert screen.chat_messages[1].stop_reason == StopReason.MAX_TOKENS
        reply = await send(pilot, screen, "and more")
        assert reply.stats.cached_tokens > 0  # continuing the reopened chat reuses the KV prefix
        titles = {c.title: len(c.messages) for c in stored()}
        assert titles == {"first chat": 4, "second chat": 2}


async def test_a_saved_conversation_survives_a_restart(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, "remember me")
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await pilot.press("f3")
        sidebar = screen.query_one(ConversationSidebar)
        assert [c.title for c in sidebar.conversations] == ["remember me"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(screen.chat_messages) == 2)
        assert screen.chat_messages[0].content == "remember me"


async def test_a_thousand_message_conversation_opens_fast_and_whole(tiny_model_path: Path) -> None:
    with Store() as store:
        turns = [{"role": ("user", "assistant")[i % 2], "content": f"message {i}"} for i in range(1000)]
        big = store.create_conversation("long one", messages=turns)
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        start = time.perf_counter()
        messages, settings = app.history.open(big, screen.settings)
        await screen.load_conversation(messages, settings)
        await pilot.pause()
        print(f"\n1,000-message conversation opened in {time.perf_counter() - start:.2f} s")
        assert [m.content for m in screen.chat_messages][-1] == "message 999"
        assert len(screen.chat_messages) == 50
        assert len(screen.engine_messages()) == 1000  # the model still gets all of it
        screen.query_one("#earlier", Button).press()  # scrolled to the top, the user clicks it
        await wait_for(pilot, lambda: "(900 not shown)" in str(screen.query_one("#earlier", Button).label))
        assert len(screen.chat_messages) == 100 and screen.chat_messages[0].content == "message 900"
