"""The chat: the conversation, the message box, the sampling panel and the status line.

The widgets are the conversation: each ChatMessage holds its role and text, and the engine is
sent the messages in screen order (minus turns dropped to fit the context).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Static

from bonsai_tui.engine_worker import ReplyFailed, ReplyFinished, ReplyGenerator, ReplyTokens
from bonsai_tui.screens.chat_documents import ChatDocuments, DocumentsMixin, engine_entry, engine_turn, saved_documents
from bonsai_tui.screens.context_full import ContextChoice, ContextFullScreen
from bonsai_tui.screens.help import HelpScreen
from bonsai_tui.widgets.attachments import AttachmentBar
from bonsai_tui.widgets.chat_message import ChatMessage
from bonsai_tui.generation_settings import MODEL_DEFAULT, GenerationSettings
from bonsai_tui.widgets.params_panel import ParamsPanel
from bonsai_tui.widgets.prompt_input import PromptInput
from bonsai_tui.widgets.status_bar import ModelSummary, StatusBar
from engine.errors import ContextFullError
from engine.model import Model
from engine.sampling import PRESETS, SamplingParams
from engine.session import ChatSession, GenerationStats, StopReason

WIDE_ENOUGH_FOR_PANEL = 120  # columns from which the sampling panel opens by default
BUSY_NOTICE = "Bonsai is still replying: press Esc to stop it first (your text stays in the box)."


VISIBLE_MESSAGES = 50  # of a reopened conversation, shown at once; older ones on request


def message_from(entry: dict[str, Any]) -> ChatMessage:
    """A message widget from the history's saved form."""
    message = ChatMessage(
        entry["role"],
        entry["content"],
        stats=GenerationStats(**entry["stats"]) if "stats" in entry else None,
        stop_reason=StopReason(entry["stop_reason"]) if "stop_reason" in entry else None,
    )
    message.context, message.sources = entry.get("context"), tuple(entry.get("sources", ()))
    return message


class ChatScreen(DocumentsMixin, Screen[None]):
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+n", "new_chat", "New chat"),
        Binding("f2", "toggle_panel", "Sampling"),
        Binding("ctrl+o", "attach_files", "Attach files", show=False),  # in F1 and the palette
        Binding("ctrl+t", "toggle_thinking", "Thinking", show=False),
        Binding("f1,question_mark", "help", "Help"),
    ]

    class ConversationChanged(Message):
        """A message was sent, a reply ended, or the chat was cleared: the state to save."""

        def __init__(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> None:
            super().__init__()
            self.messages = messages
            self.settings = settings

    enable_thinking: reactive[bool] = reactive(False)

    def __init__(
        self,
        model: Model,
        settings: GenerationSettings,
        n_ctx: int = 0,
        draft: str = "",
        send_draft: bool = False,
        sidebar: Widget | None = None,
        documents: ChatDocuments | None = None,
    ) -> None:
        super().__init__()
        self.documents = documents  # attached files (None without a history database)
        self.sidebar = sidebar  # the history, shown at the left when the app has one
        self.draft = draft
        self.send_draft = send_draft
        self.model = model
        self.settings = settings
        self.session = ChatSession(model, n_ctx=n_ctx, params=settings.params)
        self.generator = ReplyGenerator(self, self.session)
        self._reply: ChatMessage | None = None
        self._editing: ChatMessage | None = None
        # a reopened long conversation shows its last messages; the older ones wait here (saved
        # form, oldest first) until asked for, but are still sent to the model
        self._older: list[dict[str, Any]] = []

    # ---- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Container(id="sidebar-slot"):
                if self.sidebar is not None:
                    yield self.sidebar
            with Vertical(id="chat-column"):
                with VerticalScroll(id="conversation"):
                    yield Button("", id="earlier")
                    yield Static(self._welcome_text(), id="welcome", markup=False)
                yield AttachmentBar(id="attachments")
                yield PromptInput(id="prompt")
                yield StatusBar(self._model_summary(), id="status")
            yield ParamsPanel(
                self.settings, self.model.default_params(), max_tokens_limit=self.session.n_ctx, id="params"
            )
        yield Footer(compact=True)

    def _model_summary(self) -> ModelSummary:
        return ModelSummary(
            name=self.model.config.name,
            size_bytes=self.model.path.stat().st_size,
            threads=self.model.threads,
            n_ctx=self.session.n_ctx,
        )

    def _welcome_text(self) -> str:
        return (
            f"{self.model.config.name} is ready. Type a message and press Enter.\n"
            "F2 sampling panel · F1 keys · Ctrl+P every command"
        )

    async def on_mount(self) -> None:
        self.query_one("#params", ParamsPanel).display = self.app.size.width >= WIDE_ENOUGH_FOR_PANEL
        self.query_one("#conversation", VerticalScroll).anchor()
        self.prompt.text = self.draft
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.focus()
        if self.send_draft and self.draft.strip():
            await self.send(self.draft)

    def on_unmount(self) -> None:
        self.generator.stop()

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def status(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    @property
    def chat_messages(self) -> list[ChatMessage]:
        return list(self.query_one("#conversation").query_children(ChatMessage))

    # ---- conversation -----------------------------------------------------------------------

    def engine_messages(self) -> list[dict[str, str]]:
        """What the model is sent: the system prompt, then every turn not dropped."""
        system = [{"role": "system", "content": self.settings.system_prompt}] if self.settings.system_prompt else []
        older = [engine_entry(e) for e in self._older if not e.get("dropped")]
        turns = [engine_turn(m) for m in self.chat_messages if m is not self._reply and not m.has_class("-dropped")]
        return system + older + turns

    def saved_messages(self) -> list[dict[str, Any]]:
        """The conversation with each reply's stats, as the history stores it."""
        saved: list[dict[str, Any]] = [{k: v for k, v in e.items() if k != "dropped"} for e in self._older]
        for message in self.chat_messages:
            entry: dict[str, Any] = dict(message.as_chat) | saved_documents(message)
            if message.stats is not None and message.stop_reason is not None:
                entry["stats"] = asdict(message.stats)
                entry["stop_reason"] = message.stop_reason.value
            saved.append(entry)
        return saved

    async def load_conversation(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> None:
        """Show a saved conversation (from the history) and its settings: the last VISIBLE_MESSAGES
        at once, older ones on request, so a conversation of thousands opens instantly."""
        await self._clear()
        self.settings = settings
        self.session.params = settings.params
        self.query_one("#params", ParamsPanel).load(settings)
        entries = [entry for entry in messages if entry["role"] in ("user", "assistant")]
        self._older = entries[:-VISIBLE_MESSAGES]
        await self._mount_messages(map(message_from, entries[-VISIBLE_MESSAGES:]))
        self._show_earlier_button()
        await self.show_sources()
        await self.refresh_attachments()

    def _show_earlier_button(self) -> None:
        button = self.query_one("#earlier", Button)
        button.display = bool(self._older)
        button.label = f"↑ Show {min(len(self._older), VISIBLE_MESSAGES)} earlier messages ({len(self._older)} not shown)"

    @on(Button.Pressed, "#earlier")
    async def show_earlier(self) -> None:
        batch, self._older = self._older[-VISIBLE_MESSAGES:], self._older[:-VISIBLE_MESSAGES]
        widgets = [message_from(entry) for entry in batch]
        for widget, entry in zip(widgets, batch):
            widget.set_class(bool(entry.get("dropped")), "-dropped")
        await self.query_one("#conversation", VerticalScroll).mount_all(widgets, after="#earlier")
        self._show_earlier_button()
        await self.show_sources()

    async def _mount_messages(self, messages: Iterable[ChatMessage]) -> None:
        conversation = self.query_one("#conversation", VerticalScroll)
        self.query_one("#welcome").display = False
        await conversation.mount_all(list(messages))
        conversation.anchor()

    async def _clear(self) -> None:
        await self.query_one("#conversation").query_children(ChatMessage).remove()
        self._older = []
        self._show_earlier_button()
        self.query_one("#welcome").display = True
        self._cancel_edit()
        self.status.last_stats = None
        self.status.context_used = 0

    def _announce_change(self) -> None:
        self.post_message(self.ConversationChanged(self.saved_messages(), self.settings))

    # ---- sending ----------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def _prompt_submitted(self, event: PromptInput.Submitted) -> None:
        await self.send(event.text)

    async def send(self, text: str) -> None:
        if await self.attach_command(text.strip()):
            return
        if self.generator.busy or self.searching_documents:
            self.notify(BUSY_NOTICE, severity="warning")
            return
        if self._editing is not None:
            await self._remove_from(self._editing)
        self.prompt.clear()
        question = ChatMessage("user", text.strip())
        await self._mount_messages([question])
        await self.add_documents_context(question)
        await self._start_reply(self.settings.params)

    async def _start_reply(self, params: SamplingParams) -> None:
        self.session.params = params
        self._reply = ChatMessage("assistant")
        messages = self.engine_messages()
        await self._mount_messages([self._reply])
        await self.show_sources()
        self._reply.start_stream()
        self._announce_change()  # the user's message is saved now, the reply when it ends
        self.generator.start(messages, self.settings.max_tokens, self.enable_thinking)
        self.refresh_bindings()

    async def _remove_from(self, first: ChatMessage) -> None:
        """Remove a message and everything after it (an edit replaces the later turns)."""
        messages = self.chat_messages
        await self.query_one("#conversation").remove_children(messages[messages.index(first) :])
        self._cancel_edit()

    # ---- engine events ----------------------------------------------------------------------

    async def on_reply_tokens(self, event: ReplyTokens) -> None:
        if self._reply is not None:
            await self._reply.append(event.text)
        self.status.live_tok_s = event.decode_tok_s
        self.status.context_used = event.context_used

    async def on_reply_finished(self, event: ReplyFinished) -> None:
        done = event.done
        reply, self._reply = self._reply, None
        if reply is not None:
            await reply.finish(done.text, done.stats, done.stop_reason)
        self.generator.settle()
        self.status.live_tok_s = None
        self.status.last_stats = done.stats
        self.status.context_used = len(done.prompt_ids) + len(done.token_ids)
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

    async def _context_choice_made(self, choice: ContextChoice | None) -> None:
        unanswered = self._unanswered_question()
        if choice == "new":
            await self._clear()
            if unanswered is not None:
                await self._mount_messages([ChatMessage("user", unanswered.content)])
                await self._start_reply(self.settings.params)
        elif choice == "drop":
            if self._drop_oldest_turns() and unanswered is not None:
                await self._start_reply(self.settings.params)

    def _unanswered_question(self) -> ChatMessage | None:
        messages = self.chat_messages
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
        left = dropped
        for entry in [e for e in self._older if not e.get("dropped")][:left]:
            entry["dropped"] = True
            left -= 1
        for message in [m for m in self.chat_messages if not m.has_class("-dropped")][:left]:
            message.add_class("-dropped")
        self.notify(f"Dropped the {dropped} oldest messages from the context (they stay visible, greyed).")
        return True

    # ---- actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generator.busy or self._editing is not None or None
        if action == "regenerate":
            return not self.generator.busy and self._last_reply() is not None or None
        return True

    def _last_reply(self) -> ChatMessage | None:
        replies = [m for m in self.chat_messages if m.role == "assistant"]
        return replies[-1] if replies else None

    def action_stop(self) -> None:
        if self.generator.busy:
            self.generator.stop()
        elif self._editing is not None:
            self._cancel_edit()
            self.prompt.clear()

    async def action_regenerate(self) -> None:
        last = self._last_reply()
        if self.generator.busy:
            self.notify(BUSY_NOTICE, severity="warning")
        elif last is not None:
            await self._regenerate(last)

    @on(ChatMessage.RegenerateRequested)
    async def _regenerate_requested(self, event: ChatMessage.RegenerateRequested) -> None:
        if self.generator.busy:
            self.notify(BUSY_NOTICE, severity="warning")
        else:
            await self._regenerate(event.message)

    async def _regenerate(self, reply: ChatMessage) -> None:
        """Replace `reply` (and anything after it) with a new one, sampled with a new seed."""
        await self._remove_from(reply)
        await self._start_reply(self.settings.params.with_changes(seed=secrets.randbelow(2**31)))

    def action_edit_last(self) -> None:
        questions = [m for m in self.chat_messages if m.role == "user"]
        if questions:
            self.edit(questions[-1])

    @on(PromptInput.EditLastRequested)
    def _edit_last_requested(self) -> None:
        self.action_edit_last()

    @on(ChatMessage.EditRequested)
    def _edit_requested(self, event: ChatMessage.EditRequested) -> None:
        self.edit(event.message)

    def edit(self, message: ChatMessage) -> None:
        if self.generator.busy:
            self.notify(BUSY_NOTICE, severity="warning")
            return
        self._cancel_edit()
        self._editing = message
        message.add_class("-editing")
        self.prompt.text = message.content
        self.prompt.move_cursor(self.prompt.document.end)
        self.prompt.focus()
        self.refresh_bindings()
        self.notify("Editing: Enter resends from this message (later turns are replaced), Esc cancels.")

    def _cancel_edit(self) -> None:
        if self._editing is not None:
            self._editing.remove_class("-editing")
            self._editing = None
            self.refresh_bindings()

    async def action_new_chat(self) -> None:
        if self.generator.busy:
            self.notify(BUSY_NOTICE, severity="warning")
            return
        await self._clear()
        await self.attachment_bar.show([])  # a new chat starts without attachments
        self.prompt.clear()
        self.prompt.focus()
        self._announce_change()

    def action_toggle_panel(self) -> None:
        panel = self.query_one("#params", ParamsPanel)
        panel.display = not panel.display
        if panel.display:
            panel.query_one("#temperature").focus()
        else:
            self.prompt.focus()

    def action_toggle_thinking(self) -> None:
        self.enable_thinking = not self.enable_thinking
        self.notify(f"Thinking {'on' if self.enable_thinking else 'off'} for the next replies")

    def watch_enable_thinking(self, enabled: bool) -> None:
        self.status.thinking = enabled

    def action_help(self) -> None:
        sections = [
            ("Chat", self.BINDINGS),
            ("Message box", [Binding("enter", "", "Send"), Binding("ctrl+j", "", "New line (also Shift+Enter where the terminal sends it)"), Binding("up", "", "Edit your last message (when the box is empty)")]),
            ("A focused message (Tab / Shift+Tab or click)", ChatMessage.BINDINGS),
            ("App", [
                Binding("ctrl+p", "", "Command palette: every action"),
                Binding("f3", "", "History: saved conversations (n new, r rename, d delete, / search)"),
                Binding("ctrl+q", "", "Quit"),
            ]),
        ]
        self.app.push_screen(HelpScreen(sections))

    def action_copy_last_reply(self) -> None:
        last = self._last_reply()
        if last is not None:
            last.action_copy()

    def action_copy_last_code(self) -> None:
        for message in reversed(self.chat_messages):
            if message.check_action("copy_code", ()):
                message.action_copy_code()
                return
        self.notify("No code block in this conversation yet.")

    def apply_preset(self, name: str) -> None:
        self.query_one("#params", ParamsPanel).apply_preset(name)

    @on(ParamsPanel.Changed)
    def _settings_changed(self, event: ParamsPanel.Changed) -> None:
        self.settings = event.settings
        # the engine re-reads its params every token: the change applies mid-reply too
        self.session.params = event.settings.params

    # ---- command palette --------------------------------------------------------------------

    def palette_commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand("Stop the reply", "Stop generating (the partial reply stays)", self.action_stop)
        yield SystemCommand("Regenerate", "Replace the last reply with a new one (new seed)", self.action_regenerate)
        yield SystemCommand("Edit last message", "Change your last message and resend it", self.action_edit_last)
        yield SystemCommand("Copy last reply", "Copy the last reply to the clipboard", self.action_copy_last_reply)
        yield SystemCommand("Copy last code block", "Copy the newest code block to the clipboard", self.action_copy_last_code)
        yield SystemCommand("New chat", "Clear the conversation and start again", self.action_new_chat)
        yield SystemCommand("Toggle sampling panel", "Show or hide the sampling parameters", self.action_toggle_panel)
        yield SystemCommand("Toggle thinking", "Let the model think before answering (enable_thinking)", self.action_toggle_thinking)
        yield SystemCommand("Help: keys", "Show every key binding", self.action_help)
        yield from self.documents_commands()
        for name in [*PRESETS, MODEL_DEFAULT]:
            yield SystemCommand(f"Preset: {name}", f"Use the {name} sampling values", lambda name=name: self.apply_preset(name))
