"""The chat app driven through Textual's Pilot on a tiny synthetic model (real engine, random weights)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import threading
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

import bonsai_tui.screens.loading
import engine.session
from bonsai_tui.app import SWITCH_NOTICE, BonsaiApp, ChatOptions
from bonsai_tui.cli import parse
from bonsai_tui.commands import chat as chat_command
from bonsai_tui.screens.chat import ChatScreen
from bonsai_tui.screens.context_full import ContextFullScreen
from bonsai_tui.screens.help import HelpScreen
from bonsai_tui.screens.loading import LoadingScreen
from bonsai_tui.engine_worker import ReplyTokens
from bonsai_tui.screens.reply_streaming import STATUS_SECONDS
from bonsai_tui.settings import log_path
from bonsai_tui.widgets.chat_message import ChatMessage, split_thinking
from bonsai_tui.widgets.prompt_input import PromptInput
from bonsai_tui.widgets.streaming_text import StreamingText
from bonsai_tui.generation_settings import CUSTOM
from bonsai_tui.widgets.params_panel import ParamsPanel
from conftest import until
from engine.sampling import PRESETS, SamplingParams
from engine.session import StopReason
from engine.threads import ENGINE_THREAD_NAME

GREEDY = SamplingParams(temperature=0.0, seed=0)
pytestmark = pytest.mark.anyio


@pytest.fixture
def sampled(monkeypatch: pytest.MonkeyPatch) -> list[SamplingParams]:
    """The parameters the engine sampled each token with (wraps the real sampler)."""
    seen: list[SamplingParams] = []
    real_sample = engine.session.sample

    def recording_sample(logits, recent, params, rng):
        seen.append(params)
        return real_sample(logits, recent, params, rng)

    monkeypatch.setattr(engine.session, "sample", recording_sample)
    return seen


class PausedEngine:
    """Holds the engine thread inside the sampler after `after` tokens until `release()`, so a
    test can act while a reply is surely in the middle of streaming."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls = 0
        self.gate = threading.Event()

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def paused_engine(monkeypatch: pytest.MonkeyPatch):
    pause = PausedEngine(after=2)
    real_sample = engine.session.sample

    def pausing_sample(logits, recent, params, rng):
        pause.calls += 1
        if pause.calls > pause.after:
            pause.gate.wait(timeout=30)
        return real_sample(logits, recent, params, rng)

    monkeypatch.setattr(engine.session, "sample", pausing_sample)
    yield pause
    pause.release()


def make_app(model_path: Path, max_tokens: int = 12, n_ctx: int = 0, params: SamplingParams = GREEDY) -> BonsaiApp:
    options = ChatOptions(model_path, threads=1, n_ctx=n_ctx, max_tokens=max_tokens, choose_params=lambda _: params)
    return BonsaiApp(options)


wait_for = until  # conftest's one polling helper, under the name these tests use


async def open_chat(pilot: Pilot) -> ChatScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChatScreen))
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await wait_for(pilot, lambda: bool(screen.query("#prompt")) and screen.prompt.has_focus)
    return screen


async def send(pilot: Pilot, screen: ChatScreen, text: str) -> ChatMessage:
    """Type `text` and Enter, wait for the whole reply, return it."""
    await pilot.press(*text, "enter")
    await wait_for(pilot, lambda: screen._reply is not None or not screen.generator.busy)
    await wait_for(pilot, lambda: not screen.generator.busy)
    reply = screen.chat_messages[-1]
    assert reply.role == "assistant"
    return reply


async def type_into(pilot: Pilot, screen: ChatScreen, field: str, text: str) -> None:
    screen.query_one(f"#{field}", Input).focus()
    await pilot.press("home", "ctrl+k", *text)
    await pilot.pause()


def panel(screen: ChatScreen) -> ParamsPanel:
    return screen.query_one("#params", ParamsPanel)


# ---- conversation ---------------------------------------------------------------------------


async def test_second_and_third_turns_reuse_the_earlier_replies_from_the_cache(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        first = await send(pilot, screen, "hello")
        second = await send(pilot, screen, "and again")
        third = await send(pilot, screen, "once more")
        roles = [m.role for m in screen.chat_messages]
        assert roles == ["user", "assistant"] * 3
        assert screen.chat_messages[2].content == "and again"
        stats = [first.stats, second.stats, third.stats]
        assert all(s is not None and s.generated_tokens == 12 for s in stats)
        assert first.stats.cached_tokens == 0
        # each turn reuses the previous prompt and reply (all but the reply's last token, which
        # the token budget stopped before it was run) and prefills only the new message and glue
        glue = len(screen.model.tokenize("<|im_end|>\n<|im_start|>user\nand again<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"))
        assert second.stats.cached_tokens == first.stats.prompt_tokens + 11
        assert second.stats.prompt_tokens == first.stats.prompt_tokens + 12 + glue
        assert third.stats.cached_tokens == second.stats.prompt_tokens + 11
        line = str(third.query_one(".message-stats", Static).render())
        assert line.startswith(f"12 tokens · ") and f"prompt {third.stats.prompt_tokens} ({third.stats.cached_tokens} cached)" in line


async def test_status_bar_shows_speed_after_a_reply(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(160, 30)) as pilot:
        screen = await open_chat(pilot)
        assert "tok/s" not in str(screen.status.render())
        reply = await send(pilot, screen, "hi")
        status = str(screen.status.render())
        assert re.search(r"\d+\.\d tok/s · prefill \d+ tok/s · TTFT \d\.\d\d s", status), status
        used = reply.stats.prompt_tokens + reply.stats.generated_tokens
        assert f"ctx {used}/4096" in status
        assert "1 thread" in status


async def test_the_objects_of_startup_are_frozen_out_of_the_cycle_collector(tiny_model_path: Path) -> None:
    gc.unfreeze()
    app = make_app(tiny_model_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_chat(pilot)
        await until(pilot, lambda: gc.get_freeze_count() > 10_000)  # Textual's and the tokenizer's


async def test_the_live_speed_in_the_status_bar_changes_at_most_twice_a_second(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(160, 30)) as pilot:
        screen = await open_chat(pilot)
        await screen.on_reply_tokens(ReplyTokens("a", 10.0, 5))  # the first batch shows at once
        await screen.on_reply_tokens(ReplyTokens("b", 20.0, 6))  # 100 ms later: the bar waits
        assert (screen.status.live_tok_s, screen.status.context_used) == (10.0, 5)
        screen._status_shown -= STATUS_SECONDS  # as if half a second had passed
        await screen.on_reply_tokens(ReplyTokens("c", 30.0, 7))
        assert (screen.status.live_tok_s, screen.status.context_used) == (30.0, 7)
        assert str(screen.status.render()).startswith("30.0 tok/s │ ctx 7/4096")


async def start_paused_reply(pilot: Pilot, screen: ChatScreen, text: str) -> ChatMessage:
    await pilot.press(*text, "enter")
    await wait_for(pilot, lambda: screen._reply is not None and len(screen._reply.content) > 0)
    assert screen.generator.busy
    return screen._reply


async def test_stop_keeps_the_partial_reply(tiny_model_path: Path, paused_engine: PausedEngine) -> None:
    app = make_app(tiny_model_path, max_tokens=100)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        reply = await start_paused_reply(pilot, screen, "write a lot")
        partial = reply.content
        await pilot.press("escape")
        paused_engine.release()
        await wait_for(pilot, lambda: not screen.generator.busy)
        assert reply.stop_reason == StopReason.CANCELLED
        assert reply.content.startswith(partial)  # the partial text stays
        # the token being sampled when Esc came is the last one
        assert reply.stats.generated_tokens == paused_engine.after + 1
        assert reply.has_class("-stopped")
        assert "stopped" in str(reply.query_one(".message-stats", Static).render())


async def test_a_reply_stopped_in_its_prefill_claims_no_speed_and_no_context(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(160, 30)) as pilot:
        screen = await open_chat(pilot)
        first = await send(pilot, screen, "hi")
        used_before = first.stats.prompt_tokens + first.stats.generated_tokens
        assert f"ctx {used_before}/4096" in str(screen.status.render())
        # what a stop before the first slice of the prompt has run returns (session._prefill)
        monkeypatch.setattr(engine.session.ChatSession, "_prefill", lambda self, prompt, start, stopped: None)
        stopped = await send(pilot, screen, "a long document")
        assert stopped.stop_reason == StopReason.CANCELLED
        line = str(stopped.query_one(".message-stats", Static).render())
        assert line == f"0 tokens · 0.0 tok/s · prompt {stopped.stats.prompt_tokens} ({stopped.stats.cached_tokens} cached) · stopped"
        status = str(screen.status.render())
        assert "prefill" not in status and "TTFT" not in status
        assert f"ctx {stopped.stats.cached_tokens}/4096" in status  # only what the turn reused is cached


async def test_sending_while_busy_is_refused_and_keeps_the_text(tiny_model_path: Path, paused_engine: PausedEngine) -> None:
    app = make_app(tiny_model_path, max_tokens=100)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await start_paused_reply(pilot, screen, "first")
        await pilot.press(*"second", "enter")
        assert screen.prompt.text == "second"
        assert [m.content for m in screen.chat_messages if m.role == "user"] == ["first"]
        paused_engine.release()
        await wait_for(pilot, lambda: not screen.generator.busy)
        assert screen.prompt.text == "second"
        await pilot.press("enter")  # once the reply is done, it goes
        await wait_for(pilot, lambda: not screen.generator.busy and len(screen.chat_messages) == 4)
        assert screen.chat_messages[2].content == "second"


async def test_switching_models_mid_reply_is_refused_until_it_ends(tiny_model_path: Path, paused_engine: PausedEngine) -> None:
    app = make_app(tiny_model_path, max_tokens=100)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        screen = await open_chat(pilot)
        await start_paused_reply(pilot, screen, "hello")
        app.action_models()
        await pilot.pause()
        assert app.screen is screen and [n.message for n in app._notifications][-1] == SWITCH_NOTICE
        await pilot.press("escape")
        paused_engine.release()
        await wait_for(pilot, lambda: not screen.generator.busy)
        assert app._replying_chat() is None  # now the picker would open


async def test_quitting_mid_reply_stops_the_engine(tiny_model_path: Path, paused_engine: PausedEngine) -> None:
    app = make_app(tiny_model_path, max_tokens=100)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await start_paused_reply(pilot, screen, "hello")
        worker = screen.generator.worker
        await pilot.press("ctrl+q")
    paused_engine.release()
    for _ in range(1000):
        if worker.is_finished:
            break
        await asyncio.sleep(0.01)
    assert worker.is_finished
    assert paused_engine.calls == paused_engine.after + 1


async def test_regenerate_replaces_the_last_reply_with_a_new_seed(tiny_model_path: Path, sampled: list[SamplingParams]) -> None:
    app = make_app(tiny_model_path, params=SamplingParams(temperature=1.0, seed=7))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, "hello")
        assert {p.seed for p in sampled} == {7}
        sampled.clear()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen._reply is not None or not screen.generator.busy)
        await wait_for(pilot, lambda: not screen.generator.busy)
        assert [m.role for m in screen.chat_messages] == ["user", "assistant"]
        seeds = {p.seed for p in sampled}
        assert len(seeds) == 1 and seeds != {7}
        regenerated = screen.chat_messages[-1]
        assert regenerated.stats.generated_tokens == 12
        # same prompt again: all of it but the last token comes from the cache
        assert regenerated.stats.cached_tokens == regenerated.stats.prompt_tokens - 1


async def test_edit_an_earlier_message_replaces_the_later_turns(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, "one")
        await send(pilot, screen, "two")
        screen.chat_messages[0].focus()
        await pilot.press("e")
        assert screen.prompt.text == "one"
        assert screen.prompt.has_focus
        await pilot.press("backspace", "backspace", "backspace", *"uno")
        reply = await send(pilot, screen, "")
        assert [(m.role, m.content) for m in screen.chat_messages][0] == ("user", "uno")
        assert [m.role for m in screen.chat_messages] == ["user", "assistant"]
        assert reply.stats.generated_tokens == 12


async def test_up_in_an_empty_box_edits_the_last_message(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, "first")
        await pilot.press("up")
        assert screen.prompt.text == "first"
        assert screen.chat_messages[0].has_class("-editing")
        await pilot.press("escape")
        assert screen.prompt.text == ""
        assert not screen.chat_messages[0].has_class("-editing")


async def test_context_full_offers_to_drop_the_oldest_turns(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path, max_tokens=30, n_ctx=64)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, "hello")
        await pilot.press(*"tell me more", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ContextFullScreen))
        await pilot.click("#drop")
        await wait_for(pilot, lambda: app.screen is screen and len(screen.chat_messages) == 4)
        await wait_for(pilot, lambda: not screen.generator.busy)
        dropped = [m.has_class("-dropped") for m in screen.chat_messages]
        assert dropped == [True, True, False, False]
        assert screen.chat_messages[-1].stats.generated_tokens > 0


# ---- sampling panel -------------------------------------------------------------------------


async def test_panel_changes_apply_to_the_next_generation(tiny_model_path: Path, sampled: list[SamplingParams]) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_chat(pilot)
        assert panel(screen).display  # wide enough: open by default
        await type_into(pilot, screen, "temperature", "0.9")
        await type_into(pilot, screen, "top_k", "7")
        assert panel(screen).settings.preset == CUSTOM
        screen.prompt.focus()
        await send(pilot, screen, "hi")
        assert sampled and all(p.temperature == 0.9 and p.top_k == 7 for p in sampled)


@pytest.mark.parametrize("name", list(PRESETS))
async def test_presets_set_all_four_values(tiny_model_path: Path, name: str) -> None:
    app = make_app(tiny_model_path, params=SamplingParams(temperature=0.3, top_k=3, top_p=0.3, min_p=0.3, seed=5))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_chat(pilot)
        await pilot.click(f"#preset-{name.lower().replace(' ', '-')}")
        preset = PRESETS[name]
        shown = {f: screen.query_one(f"#{f}", Input).value for f in ("temperature", "top_k", "top_p", "min_p")}
        assert {f: float(v) for f, v in shown.items()} == pytest.approx(
            {"temperature": preset.temperature, "top_k": preset.top_k, "top_p": preset.top_p, "min_p": preset.min_p}
        )
        params = screen.session.params
        assert (params.temperature, params.top_k, params.top_p, params.min_p) == pytest.approx(
            (preset.temperature, preset.top_k, preset.top_p, preset.min_p)
        )
        assert params.seed == 5  # a preset keeps the seed
        assert panel(screen).settings.preset == name
        assert f"Preset: {name}" in str(screen.query_one("#preset-name").render())


async def test_model_default_preset_restores_the_models_values(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_chat(pilot)
        await pilot.click("#preset-model-default")
        default = screen.model.default_params()
        assert screen.session.params.top_k == default.top_k
        assert screen.session.params.temperature == pytest.approx(default.temperature)


async def test_invalid_parameter_shows_an_error_and_keeps_the_last_good_value(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = await open_chat(pilot)
        await type_into(pilot, screen, "top_p", "2")
        error = screen.query_one("#top_p-error", Static)
        assert error.display and "top_p must be in (0, 1]" in str(error.render())
        assert screen.query_one("#top_p", Input).has_class("-invalid")
        assert screen.session.params.top_p == GREEDY.top_p
        await type_into(pilot, screen, "max_tokens", "0")
        assert "max new tokens must be between 1 and 4096" in str(screen.query_one("#max_tokens-error", Static).render())
        await type_into(pilot, screen, "top_p", "0.5")
        assert not error.display
        assert screen.session.params.top_p == 0.5


# ---- keys, help, palette, loading -----------------------------------------------------------


async def test_help_screen_lists_the_keys(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await open_chat(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = str(app.screen.query_one("#help-keys", Static).render())
        for keys, action in (("esc", "Stop"), ("^r", "Regenerate"), ("^n", "New chat"), ("f2", "Sampling"),
                             ("f1 / ?", "Help"), ("b", "Copy code"), ("e", "Edit"), ("^j", "New line")):
            assert re.search(rf"^  {re.escape(keys)} +{action}", text, re.MULTILINE), (keys, action)
        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)


async def test_every_action_is_in_the_command_palette(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        titles = {command.title for command in app.get_system_commands(screen)}
        for title in ("Stop the reply", "Regenerate", "Edit last message", "Copy last reply", "Copy last code block",
                      "New chat", "Toggle sampling panel", "Toggle thinking", "Help: keys", "Preset: Creative", "Theme"):
            assert title in titles


async def test_copy_puts_the_reply_on_the_clipboard(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        reply = await send(pilot, screen, "hi")
        reply.focus()
        await pilot.press("c")
        assert app.clipboard == reply.content


async def test_new_chat_clears_the_conversation(tiny_model_path: Path) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, "hi")
        await pilot.press("ctrl+n")
        assert screen.chat_messages == []
        assert screen.query_one("#welcome").display


@pytest.fixture
def held_loading(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The model load waits until the returned event is set, so a test can type while loading."""
    gate = threading.Event()
    real_load = bonsai_tui.screens.loading.engine.load

    def held_load(*args, **kwargs):
        gate.wait(timeout=30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(bonsai_tui.screens.loading.engine, "load", held_load)
    yield gate
    gate.set()
    # the held load ends on the engine thread, which then ends too: nothing of this app is left running
    deadline = time.monotonic() + 30
    while any(t.name.startswith(ENGINE_THREAD_NAME) for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)


async def type_while_loading(pilot: Pilot, keys: list[str], gate: threading.Event) -> ChatScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, LoadingScreen))
    loading = pilot.app.screen
    await wait_for(pilot, lambda: loading.query_one(PromptInput).has_focus)
    await pilot.press(*keys)
    assert isinstance(pilot.app.screen, LoadingScreen)  # still loading: the keys went to its box
    gate.set()
    return await open_chat(pilot)


async def test_text_typed_while_loading_is_kept(tiny_model_path: Path, held_loading: threading.Event) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await type_while_loading(pilot, list("early"), held_loading)
        assert screen.prompt.text == "early" and screen.chat_messages == []


async def test_enter_while_loading_sends_the_message_once_ready(tiny_model_path: Path, held_loading: threading.Event) -> None:
    app = make_app(tiny_model_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await type_while_loading(pilot, [*"early", "enter"], held_loading)
        await wait_for(pilot, lambda: len(screen.chat_messages) == 2 and not screen.generator.busy)
        assert [(m.role, m.content) for m in screen.chat_messages][0] == ("user", "early")
        assert screen.chat_messages[1].stats.generated_tokens == 12
        assert screen.prompt.text == ""


async def test_a_broken_model_file_shows_a_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really")
    app = make_app(broken)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "Could not load" in str(app.screen.query_one("#loading-step").render()))
        assert "broken.gguf" in str(app.screen.query_one("#loading-step").render())
        assert isinstance(app.screen, LoadingScreen)


async def test_a_bug_goes_to_the_log_not_the_screen(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_action(self: ChatScreen) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ChatScreen, "action_toggle_thinking", broken_action)
    app = make_app(tiny_model_path)
    with pytest.raises(RuntimeError):
        async with app.run_test(size=(100, 30)) as pilot:
            await open_chat(pilot)
            await pilot.press("ctrl+t")
            await pilot.pause()
    assert app.crash_message is not None and app.crash_message.startswith("unexpected error: boom")
    assert not app._exit_renderables  # Textual would print the traceback from here
    assert "RuntimeError: boom" in log_path().read_text(encoding="utf-8")


# ---- pieces ---------------------------------------------------------------------------------


def test_thinking_is_split_off_and_streams_append_only() -> None:
    reply = "<think>\nLet me see.\n</think>\n\nThe answer is 42."
    parts = split_thinking(reply)
    assert (parts.thinking, parts.answer, parts.thinking_open) == ("Let me see.", "The answer is 42.", False)
    shown_answer = shown_thinking = ""
    for end in range(len(reply) + 1):
        parts = split_thinking(reply[:end])
        assert parts.answer.startswith(shown_answer) and parts.thinking.startswith(shown_thinking.strip())
        shown_answer, shown_thinking = parts.answer, parts.thinking
    assert split_thinking("<thi").answer == ""
    assert split_thinking("no thoughts").thinking == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--top-p", "2"], "top_p must be in (0, 1]"),
        (["--model", "/nonexistent.gguf"], "no such file"),
        (["--model", "m.gguf", "--repo", "a/b"], "give either --model PATH or --repo/--file"),
    ],
)
def test_cli_rejects_bad_input_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    args: argparse.Namespace = parse(argv)
    assert chat_command.run(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


async def test_a_streaming_reply_is_plain_text_then_markdown_once_it_ends() -> None:
    from textual.app import App
    from textual.widgets import Markdown

    from engine.session import GenerationStats

    class OneMessage(App[None]):
        def compose(self):
            yield ChatMessage("assistant")

    app = OneMessage()
    async with app.run_test() as pilot:
        message = app.query_one(ChatMessage)
        message.start_stream()
        await message.append("<think>hmm</think>\n\n**bold** and")
        await message.append(" more")
        await pilot.pause()
        streaming = message.query_one(".message-streaming", StreamingText)
        assert streaming.display and not message.query_one(".message-text", Markdown).display
        await until(pilot, lambda: streaming.render_line(0).text.rstrip() == "**bold** and more")  # no Markdown yet
        assert message.query_one(".thinking-streaming", StreamingText).text == "hmm"
        stats = GenerationStats(prompt_tokens=3, cached_tokens=0, generated_tokens=5, prefill_s=0.1, decode_s=0.2, ttft_s=0.1)
        await message.finish("<think>hmm</think>\n\n**bold** and more", stats, StopReason.EOS)
        await pilot.pause()
        assert not streaming.display and message.query_one(".message-text", Markdown).display
        assert message.query_one(".message-text", Markdown).source == "**bold** and more"
        assert message.query_one(".thinking-text", Markdown).source == "hmm"
