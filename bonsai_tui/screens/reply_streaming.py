"""Reply streaming, the chat screen's half that talks to the engine: start a reply on the worker,
show its token batches as they come, end it (stats, save), and offer a way on when the context
is full. A mixin of ChatScreen, which provides the attributes declared below."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

from textual.dom import DOMNode

from bonsai_tui.screens.chat_documents import engine_entry, engine_turn
from bonsai_tui.engine_worker import ReplyFailed, ReplyFinished, ReplyGenerator, ReplyTokens
from bonsai_tui.generation_settings import output_constraint
from bonsai_tui.screens.context_full import ContextChoice, ContextFullScreen
from bonsai_tui.widgets.chat_message import ChatMessage
from engine.errors import ContextFullError
from engine.sampling import SamplingParams
from engine.session import ChatSession, StopReason

# the status bar takes the live speed and context at most this often: each repaint of it is CPU
# the engine's threads want (2 cores), and a figure changing ten times a second is not read anyway
STATUS_SECONDS = 0.5

if TYPE_CHECKING:
    from bonsai_tui.generation_settings import GenerationSettings
    from bonsai_tui.widgets.conversation import ConversationView
    from bonsai_tui.widgets.status_bar import StatusBar
    from engine.model import Model


class ReplyStreaming(DOMNode):
    model: Model
    session: ChatSession
    generator: ReplyGenerator
    settings: GenerationSettings
    enable_thinking: bool
    _reply: ChatMessage | None
    _status_shown = 0.0  # when the status bar was last given the live figures
    conversation: ConversationView
    status: StatusBar

    def engine_messages(self) -> list[dict[str, str]]:
        """What the model is sent: the system prompt, then every turn not dropped."""
        system = [{"role": "system", "content": self.settings.system_prompt}] if self.settings.system_prompt else []
        return system + self.conversation.turns(engine_turn, engine_entry, leave_out=self._reply)

    def _announce_change(self) -> None:
        raise NotImplementedError  # the screen's: the state to save

    async def _start_reply(self, params: SamplingParams, question: ChatMessage | None = None) -> None:
        """Start a reply to the conversation (after `question`, mounted with it when given).

        The screen is laid out and painted once for all of it (the question, the reply's widgets,
        the footer's keys): each layout walks the whole conversation, and the reply's prefill
        waits for that paint (engine_worker.SETTLE_SECONDS)."""
        self.session.params = params
        self._reply = ChatMessage("assistant")
        with self.app.batch_update():
            await self.conversation.add([question, self._reply] if question is not None else [self._reply])
            messages = self.engine_messages()
            await self.show_sources()
            self._reply.start_stream()
            self._announce_change()  # the user's message is saved now, the reply when it ends
            make_constraint = partial(output_constraint, self.model, self.settings)  # the Output choice
            self.generator.start(messages, self.settings.max_tokens, self.enable_thinking, make_constraint)
            self.refresh_bindings()

    async def on_reply_tokens(self, event: ReplyTokens) -> None:
        if self._reply is not None:
            await self._reply.append(event.text)
        now = time.monotonic()
        if self.status.live_tok_s is None or now - self._status_shown >= STATUS_SECONDS:
            self._status_shown = now
            self.status.live_tok_s = event.decode_tok_s
            self.status.context_used = event.context_used

    async def on_reply_finished(self, event: ReplyFinished) -> None:
        done = event.done
        reply, self._reply = self._reply, None
        if reply is not None:
            await reply.finish(done.text, done.stats, done.stop_reason)
        self.generator.settle()
        self.status.live_tok_s = None
        # stopped during its prefill: only the slices run before the stop are cached, and there is
        # no speed to show
        stopped_in_prefill = done.stop_reason == StopReason.CANCELLED and not done.stats.generated_tokens
        self.status.last_stats = None if stopped_in_prefill else done.stats
        if stopped_in_prefill:
            self.status.context_used = len(self.session.cached_ids)
        else:
            self.status.context_used = done.stats.prompt_tokens + done.stats.generated_tokens
        self.refresh_bindings()
        self._announce_change()
        if done.stop_reason == StopReason.CONTEXT_FULL:
            self._offer_context_choice(
                f"The reply filled the context ({self.session.n_ctx} tokens) and was cut short."
            )

    async def on_reply_failed(self, event: ReplyFailed) -> None:
        reply, self._reply = self._reply, None
        if reply is not None:
            await reply.remove()
        self.generator.settle()
        self.status.live_tok_s = None
        self.refresh_bindings()
        if isinstance(event.error, ContextFullError):
            self._offer_context_choice(str(event.error).split(":")[0] + ".")
        else:
            self.notify(str(event.error), title="The reply failed", severity="error", timeout=10)

    # ---- context full -----------------------------------------------------------------------

    def _offer_context_choice(self, reason: str) -> None:
        self.app.push_screen(ContextFullScreen(reason), self._context_choice_made)

    async def _clear(self) -> None:
        raise NotImplementedError  # the screen's: an empty conversation

    async def _context_choice_made(self, choice: ContextChoice | None) -> None:
        unanswered = self._unanswered_question()
        if choice == "new":
            await self._clear()
            if unanswered is not None:
                await self.conversation.add([ChatMessage("user", unanswered.content)])
                await self._start_reply(self.settings.params)
        elif choice == "drop":
            if self._drop_oldest_turns() and unanswered is not None:
                await self._start_reply(self.settings.params)

    def _unanswered_question(self) -> ChatMessage | None:
        messages = self.conversation.messages
        return messages[-1] if messages and messages[-1].role == "user" else None

    def _drop_oldest_turns(self) -> bool:
        """Grey out (and stop sending) the oldest turns until a reply of max_tokens fits."""
        messages = self.engine_messages()
        reserve = min(self.settings.max_tokens, self.session.n_ctx // 2)
        try:
            kept = self.session.fit_messages(messages, reserve, self.enable_thinking)
        except ContextFullError as error:
            self.notify(f"Even the last message alone is too long: {error}", severity="error", timeout=10)
            return False
        dropped = len(messages) - len(kept)
        self.conversation.drop_oldest(dropped)
        self.notify(f"Dropped the {dropped} oldest messages from the context (they stay visible, greyed).")
        return True
