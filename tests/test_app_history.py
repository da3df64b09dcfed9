"""The chat app and the history store together: what is saved when, and reopening it."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button

from bonsai_tui.store import Store
from conftest import until
from bonsai_tui.widgets.sidebar import ConversationSidebar
from engine.session import StopReason
from test_app import PausedEngine, make_app, open_chat, paused_engine, send, start_paused_reply, wait_for  # noqa: F401, F811  (paused_engine is a fixture)

pytestmark = pytest.mark.anyio


async def stored(pilot) -> list:
    """What the history holds once the app's saves so far are written (they run on a thread)."""
    await pilot.pause()  # the screen's last announcement reaches the app
    pilot.app.history.flush()
    with Store() as store:
        return [store.load_conversation(c.id) for c in store.list_conversations()]


async def test_each_turn_is_saved_with_its_stats(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        reply = await send(pilot, screen, "hello there")
        (conversation,) = await stored(pilot)
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
        (conversation,) = await stored(pilot)
        assert [(m.role, m.content) for m in conversation.messages] == [("user", "write a lot")]
        await pilot.press("escape")
        paused_engine.release()
        await wait_for(pilot, lambda: not screen.generator.busy)
        (conversation,) = await stored(pilot)
        assert conversation.messages[1].status == "stopped"
        assert conversation.messages[1].content == screen.chat_messages[-1].content


async def test_switching_conversations_restores_messages_and_settings(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_chat(pilot)
        first = await send(pilot, screen, "first chat")
        await pilot.press("ctrl+n")
        await send(pilot, screen, "second chat")
        assert len(await stored(pilot)) == 2
        await pilot.press("f3")
        sidebar = screen.query_one(ConversationSidebar)
        await until(pilot, lambda: sidebar.up_to_date)
        assert sidebar.display and [c.title for c in sidebar.conversations] == ["second chat", "first chat"]
        await pilot.pause()
        assert app.focused is sidebar.option_list
        await pilot.press("home", "down", "enter")  # the second in the list: the first chat
        await wait_for(pilot, lambda: screen.chat_messages and screen.chat_messages[0].content == "first chat")
        assert [m.content for m in screen.chat_messages] == ["first chat", first.content]
        assert screen.chat_messages[1].stop_reason == StopReason.MAX_TOKENS
        reply = await send(pilot, screen, "and more")
        assert reply.stats.cached_tokens > 0  # continuing the reopened chat reuses the KV prefix
        titles = {c.title: len(c.messages) for c in await stored(pilot)}
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
        await until(pilot, lambda: sidebar.up_to_date)
        assert [c.title for c in sidebar.conversations] == ["remember me"]
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(screen.chat_messages) == 2)
        assert screen.chat_messages[0].content == "remember me"


async def test_a_thousand_message_conversation_opens_whole(tiny_model_path: Path) -> None:
    """Its speed is measured in benchmarks/history_bench.py, not here."""
    with Store() as store:
        turns = [{"role": ("user", "assistant")[i % 2], "content": f"message {i}"} for i in range(1000)]
        big = store.create_conversation("long one", messages=turns)
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        messages, settings = app.history.open(big, screen.settings)
        await screen.load_conversation(messages, settings)
        await wait_for(pilot, lambda: len(screen.chat_messages) == 50)
        assert [m.content for m in screen.chat_messages][-1] == "message 999"
        assert len(screen.chat_messages) == 50
        assert len(screen.engine_messages()) == 1000  # the model still gets all of it
        screen.query_one("#earlier", Button).press()  # scrolled to the top, the user clicks it
        await wait_for(pilot, lambda: "(900 not shown)" in str(screen.query_one("#earlier", Button).label))
        assert len(screen.chat_messages) == 100 and screen.chat_messages[0].content == "message 900"


def test_each_save_writes_only_the_new_rows_in_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bonsai_tui.generation_settings import GenerationSettings
    from bonsai_tui.history import History
    from engine.sampling import SamplingParams

    with Store(tmp_path / "h.sqlite3") as store:
        history = History(store, "model.gguf")
        settings = GenerationSettings(SamplingParams())
        turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "stop_reason": "eos"}]
        history.save(turn, settings)
        transactions, real_writing = [], store._writing

        def counted_writing():
            transactions.append(1)
            return real_writing()

        monkeypatch.setattr(store, "_writing", counted_writing)
        monkeypatch.setattr(store, "load_conversation", None)  # saving must not read the conversation back
        history.save([*turn, {"role": "user", "content": "more"}], settings)
        history.save([turn[0], {"role": "assistant", "content": "hey", "stop_reason": "eos"}], settings)  # regenerated
        assert transactions == [1, 1]
        monkeypatch.undo()
        stored_rows = [(m.role, m.content, m.status) for m in store.load_conversation(history.conversation_id).messages]
        assert stored_rows == [("user", "hi", "complete"), ("assistant", "hey", "complete")]
        history.close()
