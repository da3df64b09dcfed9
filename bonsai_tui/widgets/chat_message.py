"""One message of the conversation: who said it, the text as Markdown, and for replies the
model's thinking (collapsed) and the reply's stats underneath."""

from __future__ import annotations

import json
from dataclasses import dataclass

from markdown_it import MarkdownIt
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Collapsible, Label, Markdown, Static

from bonsai_tui.widgets.streaming_text import StreamingText
from engine.session import GenerationStats, StopReason

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ROLE_TITLES = {"user": "You", "assistant": "Bonsai", "system": "System"}


@dataclass(frozen=True)
class ReplyParts:
    answer: str
    thinking: str
    thinking_open: bool  # the model is still inside <think>


def _without_partial_tag(text: str, tag: str) -> str:
    """Hold back a tail that may be the start of `tag`, so a half-arrived tag is never shown."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return text[:-size]
    return text


def split_thinking(raw: str) -> ReplyParts:
    """Split a reply into the visible answer and its `<think>…</think>` part.

    Grows append-only while the reply streams: text shown once is never taken back.
    """
    start = raw.find(THINK_OPEN)
    if start < 0:
        return ReplyParts(_without_partial_tag(raw, THINK_OPEN), "", False)
    before, rest = raw[:start], raw[start + len(THINK_OPEN) :]
    end = rest.find(THINK_CLOSE)
    if end < 0:
        return ReplyParts(before, _without_partial_tag(rest, THINK_CLOSE).strip(), True)
    return ReplyParts(before + rest[end + len(THINK_CLOSE) :].lstrip("\n"), rest[:end].strip(), False)


def formatted_json(answer: str) -> str | None:
    """A JSON object or array reply as an indented ```json block (None if the answer is not one):
    replies under a JSON constraint come compact, which is hard to read."""
    try:
        value = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(value, (dict, list)):
        return None
    return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False) + "\n```"


def code_blocks(markdown: str) -> list[str]:
    return [token.content for token in MarkdownIt("commonmark").parse(markdown) if token.type == "fence"]


def format_stats(stats: GenerationStats, stop_reason: StopReason) -> str:
    parts = [f"{stats.generated_tokens} tokens", f"{stats.decode_tok_s:.1f} tok/s"]
    if stats.prompt_tokens:
        parts.append(f"prompt {stats.prompt_tokens} ({stats.cached_tokens} cached)")
    if stats.generated_tokens:  # a reply stopped during its prefill has no first token
        parts.append(f"first token {stats.ttft_s:.2f} s")
    notes = {
        StopReason.CANCELLED: "stopped",
        StopReason.MAX_TOKENS: "token limit reached",
        StopReason.CONTEXT_FULL: "context full",
    }
    if stop_reason in notes:
        parts.append(notes[stop_reason])
    return " · ".join(parts)


def _hidden(widget: StreamingText) -> StreamingText:
    widget.display = False
    return widget


def _grow(widget: StreamingText, shown: str, text: str) -> None:
    """Show `text` where `shown` was: only the new end when it extends it (as a stream does)."""
    if text.startswith(shown):
        widget.append(text[len(shown) :])
    else:
        widget.clear()
        widget.append(text)


class ChatMessage(Vertical, can_focus=True):
    """A message bubble. Replies stream in through `append` and end with `finish`."""

    BINDINGS = [
        Binding("c", "copy", "Copy"),
        Binding("b", "copy_code", "Copy code"),
        Binding("e", "edit", "Edit"),
        Binding("r", "regenerate", "Regenerate"),
    ]

    class EditRequested(Message):
        def __init__(self, message: ChatMessage) -> None:
            super().__init__()
            self.message = message

    class RegenerateRequested(Message):
        def __init__(self, message: ChatMessage) -> None:
            super().__init__()
            self.message = message

    streaming: reactive[bool] = reactive(False)
    # a question asked over attached documents: the context block it was sent with, and the
    # passages in it (see screens/chat_documents.py); None / () for every other message
    context: str | None = None
    sources: tuple[dict, ...] = ()

    def __init__(
        self,
        role: str,
        content: str = "",
        stats: GenerationStats | None = None,
        stop_reason: StopReason | None = None,
    ) -> None:
        super().__init__(classes=f"message -{role}")
        self.role = role
        self.content = content
        self.stats = stats
        self.stop_reason = stop_reason
        self._shown = ReplyParts("", "", False)

    @property
    def as_chat(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    @property
    def answer(self) -> str:
        return split_thinking(self.content).answer

    def compose(self) -> ComposeResult:
        yield Label(ROLE_TITLES.get(self.role, self.role), classes="message-role")
        if self.role != "assistant":
            # the user's own words are shown as typed, not interpreted as Markdown
            yield Static(self.content, markup=False, classes="message-plain")
            return
        parts = split_thinking(self.content)
        with Collapsible(title="Thinking", collapsed=True, classes="thinking") as thinking:
            thinking.display = bool(parts.thinking)
            yield Markdown(parts.thinking, classes="thinking-text")
            yield _hidden(StreamingText(classes="thinking-streaming"))
        yield Markdown(self._shown_answer(parts.answer), classes="message-text")
        # while the reply streams, its text is plain here and rendered as Markdown once at the end:
        # re-parsing a growing Markdown block per batch cost the engine a third of its speed, and
        # StreamingText costs each batch only what it adds (see widgets/streaming_text.py)
        yield _hidden(StreamingText(classes="message-streaming"))
        yield Static(self._stats_text(), classes="message-stats")
        self._shown = parts

    def on_mount(self) -> None:
        self.set_class(self.stop_reason == StopReason.CANCELLED, "-stopped")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "edit":
            return self.role == "user"
        if action == "regenerate":
            return self.role == "assistant" and not self.streaming
        if action == "copy_code":
            return bool(code_blocks(self.answer))
        return True

    @staticmethod
    def _shown_answer(answer: str) -> str:
        """A finished answer that is one JSON object or array (as under the JSON output choice)
        is shown indented; the conversation keeps the compact text."""
        return formatted_json(answer) or answer

    def _stats_text(self) -> str:
        if self.stats is None or self.stop_reason is None:
            return "…"
        return format_stats(self.stats, self.stop_reason)

    # ---- streaming --------------------------------------------------------------------------

    def start_stream(self) -> None:
        self.streaming = True
        self.content = ""
        self.stats = self.stop_reason = None
        self._shown = ReplyParts("", "", False)
        self.query_one(".message-stats", Static).update(self._stats_text())
        for name in ("message", "thinking"):
            self.query_one(f".{name}-text", Markdown).display = False
            streaming = self.query_one(f".{name}-streaming", StreamingText)
            streaming.clear()
            streaming.display = True

    async def append(self, text: str) -> None:
        self.content += text
        parts = split_thinking(self.content)
        if parts.thinking != self._shown.thinking:
            self.query_one(".thinking", Collapsible).display = True
            _grow(self.query_one(".thinking-streaming", StreamingText), self._shown.thinking, parts.thinking)
        if parts.answer != self._shown.answer:
            _grow(self.query_one(".message-streaming", StreamingText), self._shown.answer, parts.answer)
        self._shown = parts

    async def finish(self, text: str, stats: GenerationStats, stop_reason: StopReason) -> None:
        """End the stream; `text` is the engine's full reply (it may hold a last character the
        stream had not completed yet)."""
        if text.startswith(self.content):
            await self.append(text[len(self.content) :])
        await self.query_one(".message-text", Markdown).update(self._shown_answer(self._shown.answer))
        await self.query_one(".thinking-text", Markdown).update(self._shown.thinking)
        for name in ("message", "thinking"):
            self.query_one(f".{name}-text", Markdown).display = True
            self.query_one(f".{name}-streaming", StreamingText).display = False
        self.stats, self.stop_reason = stats, stop_reason
        self.streaming = False
        self.set_class(stop_reason == StopReason.CANCELLED, "-stopped")
        self.query_one(".message-stats", Static).update(self._stats_text())

    # ---- actions ----------------------------------------------------------------------------

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.answer if self.role == "assistant" else self.content)
        self.notify("Message copied to the clipboard")

    def action_copy_code(self) -> None:
        blocks = code_blocks(self.answer)
        if blocks:
            self.app.copy_to_clipboard(blocks[-1])
            self.notify(f"Code block copied ({len(blocks[-1].splitlines())} lines)")

    def action_edit(self) -> None:
        self.post_message(self.EditRequested(self))

    def action_regenerate(self) -> None:
        self.post_message(self.RegenerateRequested(self))
